// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity 0.8.28;

import {Eip712} from "./Eip712.sol";
import {IdentityRegistry} from "./IdentityRegistry.sol";
import {Randomness} from "./Randomness.sol";

/// @title OmniKeyStore
/// @notice An identity registry that keeps one 32-byte primary key (and optionally a secondary
///         one) per identity, readable only with a request signed by an account that holds an
///         unexpired permit for that identity (Escrin's Omni Keys). Escrin's `OmniKeyStore`
///         (escrin/escrin, evm/contracts/identity/v1/OmniKeyStore.sol): the same functions,
///         selectors, events and EIP-712 request, so Escrin's tools read keys from it.
/// @dev CONFIDENTIALITY COMES FROM SAPPHIRE ALONE. On Oasis Sapphire contract storage is
///      encrypted and `getKey` is read through an encrypted `eth_call`, so only a permit
///      holder learns a key. On any other EVM chain storage is public: anyone can read every
///      key straight from state, and the keys are not even random (see `Randomness`). Deploy
///      there only for local development and tests.
contract OmniKeyStore is IdentityRegistry {
    /// @notice What a permit holder asks for. `expiry` bounds the request's use (unix seconds).
    struct KeyRequest {
        bytes32 identity;
        address requester;
        uint256 expiry;
    }

    /// @notice A key request and the requester's EIP-712 signature over it (65 bytes, r‖s‖v).
    struct SignedKeyRequest {
        KeyRequest req;
        bytes sig;
    }

    /// @notice Escrin's: the identity has no (secondary) key.
    error KeyNotProvisioned();
    /// @notice Escrin's: the identity has a secondary key already.
    error KeyAlreadyProvisioned();
    /// @notice The request's `expiry` has passed.
    error KeyRequestExpired(uint256 expiry, uint256 now_);
    /// @notice The signature is not the requester's.
    error NotRequester(address signer, address requester);
    /// @notice The requester holds no unexpired permit for the identity.
    error NoPermit(bytes32 identity, address requester);

    /// @notice ERC-5267 (declared as in Escrin's ABI; the domain never changes).
    event EIP712DomainChanged();
    /// @notice The primary key of `identity` was made.
    event KeyProvisioned(bytes32 indexed identity);

    /// @dev The type string Escrin's store uses (identity spelled `uint256`: the 32 bytes encode
    ///      the same either way, so the digest is Escrin's).
    bytes32 public constant KEY_REQUEST_TYPEHASH =
        keccak256("KeyRequest(uint256 identity,address requester,uint256 expiry)");
    bytes32 private constant NAME_HASH = keccak256("OmniKeyStore");
    bytes32 private constant VERSION_HASH = keccak256("1");

    mapping(bytes32 identity => bytes32) private primaryKeys;
    mapping(bytes32 identity => bytes32) private secondaryKeys;

    /// @notice Makes the primary key of `identity` if it has none yet (identities made before
    ///         keys were, or whose key was rotated away). Idempotent; anyone may call it (it
    ///         reveals nothing: the key is random and stays in confidential state).
    function provisionKey(bytes32 identity) external {
        if (address(getPermitter(identity)) == address(0)) revert UnknownIdentity(identity);
        if (primaryKeys[identity] != bytes32(0)) return;
        _provision(identity, "");
    }

    /// @notice True once `identity` has a primary key.
    function isProvisioned(bytes32 identity) external view returns (bool) {
        return primaryKeys[identity] != bytes32(0);
    }

    /// @notice The primary key of `signedKeyReq.req.identity`, for a requester with a permit.
    /// @dev Call it with `eth_call`. On Sapphire the call must be encrypted (the Sapphire
    ///      envelope), otherwise the key travels in clear text.
    function getKey(SignedKeyRequest calldata signedKeyReq) external view returns (bytes32) {
        _checkRequest(signedKeyReq);
        bytes32 key = primaryKeys[signedKeyReq.req.identity];
        if (key == bytes32(0)) revert KeyNotProvisioned();
        return key;
    }

    /// @notice The secondary key, for a requester with a permit (Escrin's key rotation).
    function getSecondaryKey(SignedKeyRequest calldata signedKeyReq) external view returns (bytes32) {
        _checkRequest(signedKeyReq);
        bytes32 key = secondaryKeys[signedKeyReq.req.identity];
        if (key == bytes32(0)) revert KeyNotProvisioned();
        return key;
    }

    /// @notice Makes a secondary key. Only the registrant (random identities).
    function provisionSecondaryKey(bytes32 identityId, bytes calldata pers) external {
        _onlyRegistrant(identityId);
        if (secondaryKeys[identityId] != bytes32(0)) revert KeyAlreadyProvisioned();
        secondaryKeys[identityId] = _newKey(identityId, pers);
    }

    /// @notice The secondary key becomes the primary one. Only the registrant.
    function rotateKeys(bytes32 identityId) external {
        _onlyRegistrant(identityId);
        if (secondaryKeys[identityId] == bytes32(0)) revert KeyNotProvisioned();
        primaryKeys[identityId] = secondaryKeys[identityId];
        secondaryKeys[identityId] = bytes32(0);
    }

    /// @notice ERC-5267: ("OmniKeyStore", "1", chain id, this contract), no salt or extensions.
    function eip712Domain()
        external
        view
        returns (
            bytes1 fields,
            string memory name,
            string memory version,
            uint256 chainId,
            address verifyingContract,
            bytes32 salt,
            uint256[] memory extensions
        )
    {
        return (hex"0f", "OmniKeyStore", "1", block.chainid, address(this), bytes32(0), new uint256[](0));
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

    function _checkRequest(SignedKeyRequest calldata signed) private view {
        KeyRequest calldata req = signed.req;
        if (req.expiry < block.timestamp) revert KeyRequestExpired(req.expiry, block.timestamp);
        address signer = Eip712.recover(keyRequestDigest(req), signed.sig);
        if (signer != req.requester) revert NotRequester(signer, req.requester);
        if (readPermit(req.requester, req.identity).expiry <= block.timestamp) {
            revert NoPermit(req.identity, req.requester);
        }
    }

    function _whenIdentityCreated(bytes32 id, bytes memory pers) internal override {
        _provision(id, pers);
    }

    function _whenIdentityDestroyed(bytes32 id) internal override {
        primaryKeys[id] = bytes32(0);
        secondaryKeys[id] = bytes32(0);
    }

    function _provision(bytes32 id, bytes memory pers) private {
        primaryKeys[id] = _newKey(id, pers);
        emit KeyProvisioned(id);
    }

    function _newKey(bytes32 id, bytes memory pers) private view returns (bytes32 key) {
        key = Randomness.random32(abi.encode("smart-worker/omni-key/v1", id, pers));
        // A zero key would read as "not provisioned"; the chance is 2^-256, but be exact.
        if (key == bytes32(0)) key = keccak256(abi.encode(id, pers));
    }
}
