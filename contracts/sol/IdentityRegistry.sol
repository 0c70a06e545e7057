// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity 0.8.28;

import {Randomness} from "./Randomness.sol";

/// @title IdentityRegistry
/// @notice Identities, each with one permitter (its key policy), and the permits the permitter
///         grants. Whoever holds an unexpired permit for an identity may act as it, e.g. read
///         its key from `OmniKeyStore`.
/// @dev Two kinds of identity:
///      - random ones (`createIdentity`, as in Escrin): the id is unpredictable and unrelated
///        to any code; the permitter decides what may hold it;
///      - code-derived ones (`registerCodeIdentity`): the id is
///        `uint256(keccak256(abi.encode(codeHash, permitter)))`, so the same code under the same
///        policy gets the same identity (and key) on every machine, without anyone having to
///        create it first. Anyone may register one; the key then belongs to whoever satisfies
///        that permitter for that code.
contract IdentityRegistry {
    /// @notice A permit: the holder may act as the identity until `expiry` (unix seconds).
    struct Permit {
        uint64 expiry;
    }

    /// @notice The permitter address is zero.
    error ZeroPermitter();
    /// @notice The identity does not exist.
    error UnknownIdentity(uint256 identity);
    /// @notice Only the identity's permitter may grant or revoke it.
    error NotPermitter(uint256 identity, address caller);
    /// @notice A random identity collided with an existing one (practically impossible).
    error IdentityExists(uint256 identity);

    /// @notice A random identity was created.
    event IdentityCreated(uint256 indexed identity, address indexed permitter, address indexed creator);
    /// @notice A code-derived identity was registered (once per identity).
    event CodeIdentityRegistered(uint256 indexed identity, bytes32 indexed codeHash, address indexed permitter);
    /// @notice `to` may act as `identity` until `expiry`.
    event IdentityGranted(uint256 indexed identity, address indexed to, uint64 expiry);
    /// @notice `from` may no longer act as `identity`.
    event IdentityRevoked(uint256 indexed identity, address indexed from);

    mapping(uint256 identity => address) private permitters;
    mapping(uint256 identity => mapping(address holder => Permit)) private permits;

    /// @notice Creates a random identity governed by `permitter`.
    /// @param permitter The key policy of the new identity.
    /// @param pers Personalisation mixed into the randomness.
    /// @return identity The new identity's id.
    function createIdentity(address permitter, bytes calldata pers) external returns (uint256 identity) {
        if (permitter == address(0)) revert ZeroPermitter();
        identity = uint256(
            keccak256(abi.encode("smart-worker/identity/random", Randomness.random32(pers), msg.sender))
        );
        if (permitters[identity] != address(0)) revert IdentityExists(identity);
        permitters[identity] = permitter;
        emit IdentityCreated(identity, permitter, msg.sender);
    }

    /// @notice The code-derived identity of `codeHash` under `permitter`.
    function identityForCode(bytes32 codeHash, address permitter) public pure returns (uint256) {
        return uint256(keccak256(abi.encode(codeHash, permitter)));
    }

    /// @notice Registers the code-derived identity of `codeHash` under `permitter`. Idempotent;
    ///         anyone may call it.
    /// @return identity `identityForCode(codeHash, permitter)`.
    function registerCodeIdentity(bytes32 codeHash, address permitter) external returns (uint256 identity) {
        if (permitter == address(0)) revert ZeroPermitter();
        identity = identityForCode(codeHash, permitter);
        if (permitters[identity] == address(0)) {
            permitters[identity] = permitter;
            emit CodeIdentityRegistered(identity, codeHash, permitter);
        }
    }

    /// @notice Lets `to` act as `identity` until `expiry`. Only the identity's permitter.
    function grantIdentity(uint256 identity, address to, uint64 expiry) external {
        _onlyPermitter(identity);
        permits[identity][to] = Permit(expiry);
        emit IdentityGranted(identity, to, expiry);
    }

    /// @notice Withdraws `from`'s permit for `identity`. Only the identity's permitter.
    function revokeIdentity(uint256 identity, address from) external {
        _onlyPermitter(identity);
        delete permits[identity][from];
        emit IdentityRevoked(identity, from);
    }

    /// @notice The permit `holder` has for `identity` (expiry 0 when none).
    function readPermit(address holder, uint256 identity) external view returns (Permit memory) {
        return permits[identity][holder];
    }

    /// @notice The permitter of `identity` (zero when the identity does not exist).
    function getPermitter(uint256 identity) external view returns (address) {
        return permitters[identity];
    }

    function _onlyPermitter(uint256 identity) private view {
        address permitter = permitters[identity];
        if (permitter == address(0)) revert UnknownIdentity(identity);
        if (msg.sender != permitter) revert NotPermitter(identity, msg.sender);
    }
}
