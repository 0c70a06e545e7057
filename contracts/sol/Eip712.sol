// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity 0.8.28;

/// @title Eip712
/// @notice The few EIP-712 and ECDSA pieces the contracts need: a domain separator bound to the
///         current chain and contract, the typed-data digest, and a strict `ecrecover` wrapper.
library Eip712 {
    /// @notice The signature is not 65 bytes, has a high `s`, a bad `v`, or recovers to nothing.
    error InvalidSignature();

    bytes32 internal constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");

    /// @dev Half the secp256k1 group order: signatures with a larger `s` are malleable copies.
    uint256 private constant HALF_ORDER =
        0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;

    /// @notice The domain separator for (`nameHash`, `versionHash`, this chain, this contract).
    function domainSeparator(bytes32 nameHash, bytes32 versionHash) internal view returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, nameHash, versionHash, block.chainid, address(this)));
    }

    /// @notice `keccak256("\x19\x01" ‖ domainSeparator ‖ structHash)`.
    function digest(bytes32 domain, bytes32 structHash) internal pure returns (bytes32) {
        return keccak256(abi.encodePacked(hex"1901", domain, structHash));
    }

    /// @notice The signer of `hash` given a 65-byte `r ‖ s ‖ v` signature (`v` 27/28 or 0/1).
    /// @dev Reverts with `InvalidSignature` rather than returning the zero address.
    function recover(bytes32 hash, bytes memory signature) internal pure returns (address signer) {
        if (signature.length != 65) revert InvalidSignature();
        bytes32 r;
        bytes32 s;
        uint8 v;
        assembly {
            r := mload(add(signature, 0x20))
            s := mload(add(signature, 0x40))
            v := byte(0, mload(add(signature, 0x60)))
        }
        if (v < 27) v += 27;
        if (v != 27 && v != 28) revert InvalidSignature();
        if (uint256(s) > HALF_ORDER) revert InvalidSignature();
        signer = ecrecover(hash, v, r, s);
        if (signer == address(0)) revert InvalidSignature();
    }
}
