//! Event types of the TCG PC Client Platform Firmware Profile (section 10.4.1) and the UEFI
//! additions, with their spec names.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! event_types {
    ($($variant:ident = $value:literal, $name:literal;)*) => {
        /// A log event's type (`eventType`). Unknown values are kept as [`EventType::Other`].
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[allow(missing_docs)]
        pub enum EventType {
            $($variant,)*
            /// A value this crate has no name for.
            Other(u32),
        }

        impl EventType {
            /// The type for a raw `eventType`.
            pub fn from_u32(value: u32) -> EventType {
                match value {
                    $($value => EventType::$variant,)*
                    other => EventType::Other(other),
                }
            }

            /// The raw `eventType`.
            pub fn as_u32(self) -> u32 {
                match self {
                    $(EventType::$variant => $value,)*
                    EventType::Other(v) => v,
                }
            }

            /// The spec's name, e.g. `EV_EFI_BOOT_SERVICES_APPLICATION`; `None` for unknown types.
            pub fn spec_name(self) -> Option<&'static str> {
                match self {
                    $(EventType::$variant => Some($name),)*
                    EventType::Other(_) => None,
                }
            }

            fn from_name(name: &str) -> Option<EventType> {
                match name {
                    $($name => Some(EventType::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

event_types! {
    PrebootCert = 0x0000_0000, "EV_PREBOOT_CERT";
    PostCode = 0x0000_0001, "EV_POST_CODE";
    Unused = 0x0000_0002, "EV_UNUSED";
    NoAction = 0x0000_0003, "EV_NO_ACTION";
    Separator = 0x0000_0004, "EV_SEPARATOR";
    Action = 0x0000_0005, "EV_ACTION";
    EventTag = 0x0000_0006, "EV_EVENT_TAG";
    SCrtmContents = 0x0000_0007, "EV_S_CRTM_CONTENTS";
    SCrtmVersion = 0x0000_0008, "EV_S_CRTM_VERSION";
    CpuMicrocode = 0x0000_0009, "EV_CPU_MICROCODE";
    PlatformConfigFlags = 0x0000_000a, "EV_PLATFORM_CONFIG_FLAGS";
    TableOfDevices = 0x0000_000b, "EV_TABLE_OF_DEVICES";
    CompactHash = 0x0000_000c, "EV_COMPACT_HASH";
    Ipl = 0x0000_000d, "EV_IPL";
    IplPartitionData = 0x0000_000e, "EV_IPL_PARTITION_DATA";
    NonhostCode = 0x0000_000f, "EV_NONHOST_CODE";
    NonhostConfig = 0x0000_0010, "EV_NONHOST_CONFIG";
    NonhostInfo = 0x0000_0011, "EV_NONHOST_INFO";
    OmitBootDeviceEvents = 0x0000_0012, "EV_OMIT_BOOT_DEVICE_EVENTS";
    PostCode2 = 0x0000_0013, "EV_POST_CODE2";
    EfiEventBase = 0x8000_0000, "EV_EFI_EVENT_BASE";
    EfiVariableDriverConfig = 0x8000_0001, "EV_EFI_VARIABLE_DRIVER_CONFIG";
    EfiVariableBoot = 0x8000_0002, "EV_EFI_VARIABLE_BOOT";
    EfiBootServicesApplication = 0x8000_0003, "EV_EFI_BOOT_SERVICES_APPLICATION";
    EfiBootServicesDriver = 0x8000_0004, "EV_EFI_BOOT_SERVICES_DRIVER";
    EfiRuntimeServicesDriver = 0x8000_0005, "EV_EFI_RUNTIME_SERVICES_DRIVER";
    EfiGptEvent = 0x8000_0006, "EV_EFI_GPT_EVENT";
    EfiAction = 0x8000_0007, "EV_EFI_ACTION";
    EfiPlatformFirmwareBlob = 0x8000_0008, "EV_EFI_PLATFORM_FIRMWARE_BLOB";
    EfiHandoffTables = 0x8000_0009, "EV_EFI_HANDOFF_TABLES";
    EfiPlatformFirmwareBlob2 = 0x8000_000a, "EV_EFI_PLATFORM_FIRMWARE_BLOB2";
    EfiHandoffTables2 = 0x8000_000b, "EV_EFI_HANDOFF_TABLES2";
    EfiVariableBoot2 = 0x8000_000c, "EV_EFI_VARIABLE_BOOT2";
    EfiGptEvent2 = 0x8000_000d, "EV_EFI_GPT_EVENT2";
    EfiHcrtmEvent = 0x8000_0010, "EV_EFI_HCRTM_EVENT";
    EfiVariableAuthority = 0x8000_00e0, "EV_EFI_VARIABLE_AUTHORITY";
    EfiSpdmFirmwareBlob = 0x8000_00e1, "EV_EFI_SPDM_FIRMWARE_BLOB";
    EfiSpdmFirmwareConfig = 0x8000_00e2, "EV_EFI_SPDM_FIRMWARE_CONFIG";
    EfiSpdmDevicePolicy = 0x8000_00e3, "EV_EFI_SPDM_DEVICE_POLICY";
    EfiSpdmDeviceAuthority = 0x8000_00e4, "EV_EFI_SPDM_DEVICE_AUTHORITY";
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.spec_name() {
            Some(name) => f.write_str(name),
            None => write!(f, "0x{:08x}", self.as_u32()),
        }
    }
}

impl FromStr for EventType {
    type Err = String;

    /// A spec name (`EV_IPL`) or a raw value in hex (`0x8000000d`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(t) = EventType::from_name(s) {
            return Ok(t);
        }
        s.strip_prefix("0x")
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .map(EventType::from_u32)
            .ok_or_else(|| format!("unknown event type {s:?}"))
    }
}

impl Serialize for EventType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        String::deserialize(d)?.parse().map_err(D::Error::custom)
    }
}
