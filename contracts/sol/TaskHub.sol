// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity 0.8.28;

/// @title TaskHub
/// @notice A doorbell for Smart Workers: an app registers a hub and rings it when it has work;
///         workers watch `TasksAvailable` logs instead of polling the app.
contract TaskHub {
    /// @notice Only the hub's owner may notify through it.
    error NotHubOwner(uint256 hubId, address caller);

    /// @notice Hub `hubId` now belongs to `owner`.
    event HubRegistered(uint256 indexed hubId, address indexed owner);
    /// @notice The app behind `hubId` has tasks; `payload` is the app's, opaque here.
    event TasksAvailable(uint256 indexed hubId, address indexed app, bytes payload);

    /// @notice The number of hubs registered; hub ids are 1..hubCount.
    uint256 public hubCount;
    /// @notice The owner of each hub (zero: no such hub).
    mapping(uint256 hubId => address) public ownerOf;

    /// @notice Registers a new hub owned by the caller.
    function registerHub() external returns (uint256 hubId) {
        hubId = ++hubCount;
        ownerOf[hubId] = msg.sender;
        emit HubRegistered(hubId, msg.sender);
    }

    /// @notice Tells the hub's watchers that tasks are available. Only the hub's owner.
    function notify(uint256 hubId, bytes calldata payload) external {
        if (ownerOf[hubId] != msg.sender) revert NotHubOwner(hubId, msg.sender);
        emit TasksAvailable(hubId, msg.sender, payload);
    }
}
