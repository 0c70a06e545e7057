// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity 0.8.28;

import {IPermitter} from "./IPermitter.sol";
import {Randomness} from "./Randomness.sol";

/// @notice The functions of Escrin's `IIdentityRegistry`, for its ERC-165 interface id.
interface IIdentityRegistry {
    function createIdentity(address permitter, bytes calldata pers) external returns (bytes32 id);
    function destroyIdentity(bytes32 id) external;
    function setPermitter(bytes32 id, address permitter) external;
    function proposeRegistrationTransfer(bytes32 id, address to) external;
    function acceptRegistrationTransfer(bytes32 id) external;
    function grantIdentity(bytes32 id, address to, uint64 expiry) external;
    function revokeIdentity(bytes32 id, address from) external;
    function getPermitter(bytes32 id) external view returns (IPermitter);
    function readPermit(address holder, bytes32 identity) external view returns (IdentityRegistry.Permit memory);
    function getRegistrant(bytes32 id) external view returns (address current, address proposed);
}

/// @title IdentityRegistry
/// @notice Identities, each with one permitter (its key policy), and the permits the permitter
///         grants. Whoever holds an unexpired permit for an identity may act as it, e.g. read
///         its key from `OmniKeyStore` (which is a registry itself, as in Escrin).
/// @dev Escrin's `IIdentityRegistry` (escrin/escrin, evm/contracts/identity/v1): `bytes32`
///      identities and the same functions, selectors and events, so Escrin's tools and
///      permitters work with it. Two kinds of identity:
///      - random ones (`createIdentity`, as in Escrin), with a registrant who may destroy the
///        identity, change its permitter and transfer the registration;
///      - code-derived ones (`registerCodeIdentity`, ours): the id is
///        `keccak256(abi.encode(codeHash, permitter))`, so the same code under the same policy
///        gets the same identity (and key) on every machine, without anyone having to create it
///        first. Anyone may register one; it has no registrant, so nobody can destroy it or
///        change its permitter.
contract IdentityRegistry {
    /// @notice A permit: the holder may act as the identity until `expiry` (unix seconds).
    struct Permit {
        uint64 expiry;
    }

    /// @notice Escrin's: the action is disallowed (not the registrant or proposed registrant).
    error Unauthorized();
    /// @notice Escrin's: the contract does not support the required interface.
    error InterfaceUnsupported();
    /// @notice The permitter address is zero.
    error ZeroPermitter();
    /// @notice The identity does not exist.
    error UnknownIdentity(bytes32 identity);
    /// @notice Only the identity's permitter may grant or revoke it.
    error NotPermitter(bytes32 identity, address caller);
    /// @notice A random identity collided with an existing one (practically impossible), or a
    ///         destroyed identity is registered again.
    error IdentityExists(bytes32 identity);

    event RegistrationTransferProposed(bytes32 indexed identityId, address indexed proposed);
    event PermitterChanged(bytes32 indexed identityId);
    /// @notice A random identity was created.
    event IdentityCreated(bytes32 id);
    event IdentityDestroyed(bytes32 indexed id);
    /// @notice `to` may act as `id` (until the expiry in `readPermit`).
    event IdentityGranted(bytes32 indexed id, address indexed to);
    /// @notice `from` may no longer act as `id`.
    event IdentityRevoked(bytes32 indexed id, address indexed from);
    /// @notice A code-derived identity was registered (once per identity).
    event CodeIdentityRegistered(bytes32 indexed identity, bytes32 indexed codeHash, address indexed permitter);

    mapping(bytes32 identity => address) private permitters;
    mapping(bytes32 identity => address) private registrants;
    mapping(bytes32 identity => address) private proposedRegistrants;
    mapping(bytes32 identity => bool) private destroyed;
    mapping(bytes32 identity => mapping(address holder => Permit)) private permits;

    /// @notice Creates a random identity governed by `permitter`; the caller is its registrant.
    /// @param permitter The key policy of the new identity.
    /// @param pers Personalisation mixed into the randomness.
    /// @return id The new identity's id.
    function createIdentity(address permitter, bytes calldata pers) external returns (bytes32 id) {
        if (permitter == address(0)) revert ZeroPermitter();
        id = keccak256(abi.encode("smart-worker/identity/random", Randomness.random32(pers), msg.sender));
        if (permitters[id] != address(0) || destroyed[id]) revert IdentityExists(id);
        permitters[id] = permitter;
        registrants[id] = msg.sender;
        _whenIdentityCreated(id, pers);
        emit IdentityCreated(id);
    }

    /// @notice The code-derived identity of `codeHash` under `permitter`.
    function identityForCode(bytes32 codeHash, address permitter) public pure returns (bytes32) {
        return keccak256(abi.encode(codeHash, permitter));
    }

    /// @notice Registers the code-derived identity of `codeHash` under `permitter`. Idempotent;
    ///         anyone may call it.
    /// @return identity `identityForCode(codeHash, permitter)`.
    function registerCodeIdentity(bytes32 codeHash, address permitter) external returns (bytes32 identity) {
        if (permitter == address(0)) revert ZeroPermitter();
        identity = identityForCode(codeHash, permitter);
        if (permitters[identity] == address(0)) {
            permitters[identity] = permitter;
            _whenIdentityCreated(identity, abi.encode(codeHash));
            emit CodeIdentityRegistered(identity, codeHash, permitter);
        }
    }

    /// @notice Irrevocably destroys the identity. Only its registrant.
    function destroyIdentity(bytes32 id) external {
        _onlyRegistrant(id);
        delete registrants[id];
        delete proposedRegistrants[id];
        delete permitters[id];
        destroyed[id] = true;
        _whenIdentityDestroyed(id);
        emit IdentityDestroyed(id);
    }

    /// @notice Sets the identity's permitter. Only its registrant.
    function setPermitter(bytes32 id, address permitter) external {
        _onlyRegistrant(id);
        if (permitter == address(0)) revert ZeroPermitter();
        permitters[id] = permitter;
        emit PermitterChanged(id);
    }

    /// @notice Proposes `to` as the next registrant. Only the registrant.
    function proposeRegistrationTransfer(bytes32 id, address to) external {
        _onlyRegistrant(id);
        proposedRegistrants[id] = to;
        emit RegistrationTransferProposed(id, to);
    }

    /// @notice Accepts a proposed registration. Only the proposed registrant.
    function acceptRegistrationTransfer(bytes32 id) external {
        address proposed = proposedRegistrants[id];
        if (proposed == address(0) || msg.sender != proposed) revert Unauthorized();
        registrants[id] = proposed;
        delete proposedRegistrants[id];
    }

    /// @notice Lets `to` act as `id` until `expiry`. Only the identity's permitter.
    function grantIdentity(bytes32 id, address to, uint64 expiry) external {
        _onlyPermitter(id);
        permits[id][to] = Permit(expiry);
        emit IdentityGranted(id, to);
    }

    /// @notice Withdraws `from`'s permit for `id`. Only the identity's permitter.
    function revokeIdentity(bytes32 id, address from) external {
        _onlyPermitter(id);
        delete permits[id][from];
        emit IdentityRevoked(id, from);
    }

    /// @notice The permit `holder` has for `identity` (expiry 0 when none or destroyed).
    function readPermit(address holder, bytes32 identity) public view returns (Permit memory) {
        if (destroyed[identity]) return Permit(0);
        return permits[identity][holder];
    }

    /// @notice The permitter of `id` (zero when the identity does not exist).
    function getPermitter(bytes32 id) public view returns (IPermitter) {
        return IPermitter(permitters[id]);
    }

    /// @notice The current and proposed registrants of `id` (zero for code-derived identities).
    function getRegistrant(bytes32 id) external view returns (address current, address proposed) {
        current = registrants[id];
        proposed = proposedRegistrants[id];
    }

    /// @notice ERC-165: IERC165 and Escrin's `IIdentityRegistry`.
    function supportsInterface(bytes4 interfaceId) public view virtual returns (bool) {
        return interfaceId == 0x01ffc9a7 || interfaceId == type(IIdentityRegistry).interfaceId;
    }

    function _whenIdentityCreated(bytes32 id, bytes memory pers) internal virtual {}

    function _whenIdentityDestroyed(bytes32 id) internal virtual {}

    function _onlyRegistrant(bytes32 id) internal view {
        if (registrants[id] == address(0) || msg.sender != registrants[id]) revert Unauthorized();
    }

    function _onlyPermitter(bytes32 id) private view {
        address permitter = permitters[id];
        if (permitter == address(0)) revert UnknownIdentity(id);
        if (msg.sender != permitter) revert NotPermitter(id, msg.sender);
    }
}
