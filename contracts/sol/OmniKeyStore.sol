// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity 0.8.28;

import {Eip712} from "./Eip712.sol";
import {IdentityRegistry} from "./IdentityRegistry.sol";
import {Randomness} from "./Randomness.sol";

/// @title OmniKeyStore
/// @notice One 32-byte primary key per identity, readable only with a request signed by an
///         account that holds an unexpired permit for that identity (Escrin's Omni Keys).
/// @dev CONFIDENTIALITY COMES FROM SAPPHIRE ALONE. On Oasis Sapphire contract storage is
///      encrypted and `getKey` is read through an encrypted `eth_call`, so only a permit
///      holder learns a key. On any other EVM chain storage is public: anyone can read every
///      key straight from state, and the keys are not even random (see `Randomness`). Deploy
///      there only for local development and tests.
contract OmniKeyStore {
    /// @notice What a permit holder asks for. `expiry` bounds the request's use (unix seconds).
    struct KeyRequest {
        uint256 identity;
        address requester;
        uint256 expiry;
    }

    /// @notice A key request and the requester's EIP-712 signature over it (65 bytes, r‖s‖v).
    struct SignedKeyRequest {
        KeyRequest req;
        bytes sig;
    }

    /// @notice The request's `expiry` has passed.
    error KeyRequestExpired(uint256 expiry, uint256 now_);
    /// @notice The signature is not the requester's.
    error NotRequester(address signer, address requester);
    /// @notice The requester holds no unexpired permit for the identity.
    error NoPermit(uint256 identity, address requester);
    /// @notice The identity does not exist in the registry.
    error UnknownIdentity(uint256 identity);
    /// @notice The identity's key has not been made yet (`provisionKey`).
    error KeyNotProvisioned(uint256 identity);

    /// @notice The primary key of `identity` was made.
    event KeyProvisioned(uint256 indexed identity);

    bytes32 public constant KEY_REQUEST_TYPEHASH =
        keccak256("KeyRequest(uint256 identity,address requester,uint256 expiry)");
    bytes32 private constant NAME_HASH = keccak256("OmniKeyStore");
    bytes32 private constant VERSION_HASH = keccak256("1");

    /// @notice The registry whose permits this store honours.
    IdentityRegistry public immutable registry;

    mapping(uint256 identity => bytes32) private primaryKeys;

    constructor(IdentityRegistry registry_) {
        registry = registry_;
    }

    /// @notice Makes the primary key of `identity` if it has none yet. Idempotent; anyone may
    ///         call it (it reveals nothing: the key is random and stays in confidential state).
    function provisionKey(uint256 identity) external {
        if (registry.getPermitter(identity) == address(0)) revert UnknownIdentity(identity);
        if (primaryKeys[identity] != bytes32(0)) return;
        bytes32 key = Randomness.random32(abi.encode("smart-worker/omni-key/v1", identity));
        // A zero key would read as "not provisioned"; the chance is 2^-256, but be exact.
        if (key == bytes32(0)) key = keccak256(abi.encode(identity));
        primaryKeys[identity] = key;
        emit KeyProvisioned(identity);
    }

    /// @notice True once `identity` has a primary key.
    function isProvisioned(uint256 identity) external view returns (bool) {
        return primaryKeys[identity] != bytes32(0);
    }

    /// @notice The primary key of `signed.req.identity`, for a requester with a valid permit.
    /// @dev Call it with `eth_call`. On Sapphire the call must be encrypted (the Sapphire
    ///      envelope), otherwise the key travels in clear text.
    function getKey(SignedKeyRequest calldata signed) external view returns (bytes32) {
        KeyRequest calldata req = signed.req;
        if (req.expiry < block.timestamp) revert KeyRequestExpired(req.expiry, block.timestamp);
        address signer = Eip712.recover(keyRequestDigest(req), signed.sig);
        if (signer != req.requester) revert NotRequester(signer, req.requester);
        if (registry.readPermit(req.requester, req.identity).expiry <= block.timestamp) {
            revert NoPermit(req.identity, req.requester);
        }
        bytes32 key = primaryKeys[req.identity];
        if (key == bytes32(0)) revert KeyNotProvisioned(req.identity);
        return key;
    }

    /// @notice The EIP-712 domain separator: ("OmniKeyStore", "1", chain id, this contract).
    function domainSeparator() public view returns (bytes32) {
        return Eip712.domainSeparator(NAME_HASH, VERSION_HASH);
    }

    /// @notice The EIP-712 digest the requester signs for `req`.
    function keyRequestDigest(KeyRequest calldata req) public view returns (bytes32) {
        return Eip712.digest(
            domainSeparator(), keccak256(abi.encode(KEY_REQUEST_TYPEHASH, req.identity, req.requester, req.expiry))
        );
    }
}
