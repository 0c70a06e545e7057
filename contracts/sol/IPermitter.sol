// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity 0.8.28;

/// @title IPermitter
/// @notice A key policy. An identity's permitter decides who may act as that identity, and
///         for how long, by calling `IdentityRegistry.grantIdentity`. Escrin's `IPermitter`
///         (escrin/escrin, evm/contracts/identity/v1/IPermitter.sol): the same functions and
///         selectors (and ERC-165 id: these three functions), so permitters are interchangeable with
///         Escrin's.
interface IPermitter {
    /// @notice Asks the permitter to grant `identity` to `requester` for `duration` seconds.
    /// @param identity The identity in the registry whose permitter is this contract.
    /// @param requester The account that will hold the permit (and later sign key requests).
    /// @param duration Requested permit lifetime in seconds.
    /// @param context Permitter-specific request data (what is being asked for).
    /// @param authorization Permitter-specific proof that the request may be granted.
    /// @return expiry The permit's expiry (unix seconds).
    function acquireIdentity(
        bytes32 identity,
        address requester,
        uint64 duration,
        bytes calldata context,
        bytes calldata authorization
    ) external returns (uint64 expiry);

    /// @notice Asks the permitter to revoke `possessor`'s permit for `identity`.
    function releaseIdentity(
        bytes32 identity,
        address possessor,
        bytes calldata context,
        bytes calldata authorization
    ) external;

    /// @notice The registry (or permitter) this permitter calls on success.
    function upstream() external view returns (address);
}
