//! Powering off, and the requests to: the ACPI power button (what `virsh shutdown`, QEMU's
//! `system_powerdown` and cloud "stop" buttons press) and Ctrl-Alt-Del.
//!
//! Both become signals to init: Ctrl-Alt-Del makes the kernel send SIGINT to init (once
//! `reboot(RB_DISABLE_CAD)`), and a power-button press read from its evdev device makes init send
//! itself SIGTERM. Init's supervisor hears either from the reaper thread and stops the server
//! (SIGTERM, which it shuts down gracefully on); once it has stopped, [`power_off`] syncs and
//! unmounts the state disk before the power goes.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::reboot::{reboot, set_cad_enabled, RebootMode};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// `struct input_event` on 64-bit Linux: a `timeval` (16 bytes), type, code, value.
const INPUT_EVENT_SIZE: usize = 24;
const EV_KEY: u16 = 0x01;
const KEY_POWER: u16 = 116;

#[derive(Debug, thiserror::Error)]
pub enum PowerError {
    #[error("cannot hand Ctrl-Alt-Del to init: {0}")]
    CtrlAltDel(Errno),
    #[error("cannot start the power button thread: {0}")]
    Thread(std::io::Error),
}

/// Syncs, unmounts the state disk (if one is mounted: [`super::storage::release`]) and powers
/// the machine off. Never returns: if the kernel refuses, init waits forever rather than exit
/// (which would panic the kernel).
pub fn power_off() -> ! {
    super::storage::release();
    nix::unistd::sync();
    let error = reboot(RebootMode::RB_POWER_OFF).err();
    let message = format!("init: power off failed: {error:?}; halting");
    tracing::error!("{message}");
    eprintln!("{message}");
    let _ = reboot(RebootMode::RB_HALT_SYSTEM);
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Makes Ctrl-Alt-Del a SIGINT to init and watches every ACPI power button.
pub fn watch() -> Result<(), PowerError> {
    set_cad_enabled(false).map_err(PowerError::CtrlAltDel)?;
    let buttons = power_buttons(Path::new("/sys/class/input"));
    if buttons.is_empty() {
        tracing::warn!("init: no ACPI power button: shut down with SIGTERM or Ctrl-Alt-Del");
    }
    for device in buttons {
        tracing::info!(device = %device.display(), "init: watching the power button");
        std::thread::Builder::new()
            .name("init-power-button".into())
            .spawn(move || watch_button(&device))
            .map_err(PowerError::Thread)?;
    }
    Ok(())
}

/// The `/dev/input/eventN` of each input device named "Power Button" under `class_input`
/// (`/sys/class/input`: `inputM/name`, `inputM/eventN/`).
pub fn power_buttons(class_input: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(class_input) else {
        return Vec::new();
    };
    let mut devices: Vec<PathBuf> = entries
        .flatten()
        .filter(|input| {
            std::fs::read_to_string(input.path().join("name"))
                .is_ok_and(|name| name.trim() == "Power Button")
        })
        .filter_map(|input| {
            std::fs::read_dir(input.path())
                .ok()?
                .flatten()
                .find_map(|child| {
                    let name = child.file_name().to_string_lossy().into_owned();
                    name.starts_with("event")
                        .then(|| Path::new("/dev/input").join(name))
                })
        })
        .collect();
    devices.sort();
    devices
}

/// Whether a raw `input_event` is the power key going down.
pub fn is_power_press(event: &[u8; INPUT_EVENT_SIZE]) -> bool {
    let kind = u16::from_ne_bytes([event[16], event[17]]);
    let code = u16::from_ne_bytes([event[18], event[19]]);
    let value = i32::from_ne_bytes([event[20], event[21], event[22], event[23]]);
    kind == EV_KEY && code == KEY_POWER && value == 1
}

fn watch_button(device: &Path) {
    // devtmpfs creates the node shortly after the device appears.
    let mut file = None;
    for _ in 0..50 {
        match File::open(device) {
            Ok(f) => {
                file = Some(f);
                break;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    let Some(mut file) = file else {
        tracing::warn!(device = %device.display(), "init: cannot open the power button");
        return;
    };
    let mut event = [0u8; INPUT_EVENT_SIZE];
    loop {
        match file.read_exact(&mut event) {
            Ok(()) if is_power_press(&event) => {
                tracing::info!("init: power button pressed: shutting down");
                if let Err(e) = kill(Pid::this(), Signal::SIGTERM) {
                    tracing::error!("init: cannot signal init: {e}");
                }
            }
            Ok(()) => {}
            Err(e) => {
                tracing::warn!(device = %device.display(), "init: power button read failed: {e}");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: u16, code: u16, value: i32) -> [u8; INPUT_EVENT_SIZE] {
        let mut e = [0u8; INPUT_EVENT_SIZE];
        e[16..18].copy_from_slice(&kind.to_ne_bytes());
        e[18..20].copy_from_slice(&code.to_ne_bytes());
        e[20..24].copy_from_slice(&value.to_ne_bytes());
        e
    }

    #[test]
    fn only_a_power_key_press_counts() {
        assert!(is_power_press(&event(EV_KEY, KEY_POWER, 1)));
        assert!(!is_power_press(&event(EV_KEY, KEY_POWER, 0)), "release");
        assert!(!is_power_press(&event(EV_KEY, 1, 1)), "another key");
        assert!(!is_power_press(&event(0, 0, 0)), "sync event");
    }

    #[test]
    fn power_buttons_are_found_by_name_in_sysfs() {
        let dir = std::env::temp_dir().join(format!("runner-power-{}", std::process::id()));
        let add = |input: &str, name: &str, event: &str| {
            let path = dir.join(input);
            std::fs::create_dir_all(path.join(event)).unwrap();
            std::fs::write(path.join("name"), format!("{name}\n")).unwrap();
        };
        add("input0", "Power Button", "event0");
        add("input1", "AT Translated Set 2 keyboard", "event1");
        add("input2", "Power Button", "event2");

        assert_eq!(
            power_buttons(&dir),
            [
                PathBuf::from("/dev/input/event0"),
                PathBuf::from("/dev/input/event2")
            ]
        );
        assert!(power_buttons(&dir.join("missing")).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
