// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity 0.8.28;

/// @title IPermitter
/// @notice A key policy. An identity's permitter decides who may act as that identity, and
///         for how long, by calling `IdentityRegistry.grantIdentity`. The shape follows Escrin's
///         `IPermitter` so permitters stay interchangeable.
interface IPermitter {
    /// @notice Asks the permitter to grant `identity` to `requester` for `duration` seconds.
    /// @param identity The identity in the registry whose permitter is this contract.
    /// @param requester The account that will hold the permit (and later sign key requests).
    /// @param duration Requested permit lifetime in seconds.
    /// @param context Permitter-specific request data (what is being asked for).
    /// @param authorization Permitter-specific proof that the request may be granted.
    /// @return expiry The permit's expiry (unix seconds).
    function acquireIdentity(
        uint256 identity,
        address requester,
        uint64 duration,
        bytes calldata context,
        bytes calldata authorization
    ) external returns (uint64 expiry);
}
