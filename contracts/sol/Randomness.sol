// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity 0.8.28;

/// @title Randomness
/// @notice 32 random bytes for identities and keys: Sapphire's random-bytes precompile on
///         Sapphire, an INSECURE stand-in anywhere else (local development chains only).
library Randomness {
    /// @notice The Sapphire random-bytes precompile did not answer with 32 bytes.
    error RandomBytesFailed();

    // Sapphire's RANDOM_BYTES precompile: abi.encode(uint256 numBytes, bytes pers) in, the raw
    // bytes out (as in Sapphire.sol of the oasisprotocol sapphire-contracts package).
    address internal constant RANDOM_BYTES = 0x0100000000000000000000000000000000000001;

    /// @notice True on Oasis Sapphire mainnet (0x5afe), testnet (0x5aff) or localnet (0x5afd).
    function isSapphire() internal view returns (bool) {
        return block.chainid == 0x5afe || block.chainid == 0x5aff || block.chainid == 0x5afd;
    }

    /// @notice 32 bytes of randomness personalised with `pers`.
    /// @dev On Sapphire the bytes come from the confidential runtime's VRF and never appear in
    ///      public state. ANYWHERE ELSE THIS IS NOT RANDOM: it hashes values every block producer
    ///      knows or chooses (prevrandao, the previous block hash, the timestamp). It exists only
    ///      so that the same contracts run on a local development chain (hardhat), where nothing
    ///      is confidential anyway.
    function random32(bytes memory pers) internal view returns (bytes32) {
        if (isSapphire()) {
            (bool ok, bytes memory out) = RANDOM_BYTES.staticcall(abi.encode(uint256(32), pers));
            if (!ok || out.length != 32) revert RandomBytesFailed();
            return bytes32(out);
        }
        // INSECURE development fallback (see above).
        return keccak256(
            abi.encode(block.prevrandao, blockhash(block.number - 1), block.timestamp, address(this), pers)
        );
    }
}
