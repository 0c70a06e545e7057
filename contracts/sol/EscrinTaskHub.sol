// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity 0.8.28;

/// @title IEscrinTaskHub
/// @notice Escrin's `ITaskHub` (escrin/escrin, evm/contracts/tasks/v1/hub/ITaskHub.sol): the same
///         event, functions and ERC-165 interface id, so Escrin's notifiers (e.g. NFTrout's
///         `TaskHubNotifier`) and runners work with it.
interface IEscrinTaskHub {
    /// @notice `generator` (the notifying contract or account) has tasks; `context` is its
    ///         optional filter value (zero from `notify()`).
    event TasksAvailable(address indexed generator, bytes32 indexed context);

    /// @notice Alerts any listening task runners that there are new tasks available.
    function notify() external;

    /// @notice The same, with `context` for listeners to filter on.
    function notify(bytes32 context) external;
}

/// @title EscrinTaskHub
/// @notice Escrin's TaskHub as Escrin deploys it: anyone may notify, and the event names the
///         caller. The Smart Worker runner watches it with `taskhub.kind = "escrin"`.
contract EscrinTaskHub is IEscrinTaskHub {
    /// @inheritdoc IEscrinTaskHub
    function notify() external override {
        emit TasksAvailable(msg.sender, "");
    }

    /// @inheritdoc IEscrinTaskHub
    function notify(bytes32 context) external override {
        emit TasksAvailable(msg.sender, context);
    }

    /// @notice ERC-165: IERC165 and Escrin's ITaskHub (the id of the two `notify` functions).
    function supportsInterface(bytes4 interfaceId) external pure returns (bool) {
        return interfaceId == type(IEscrinTaskHub).interfaceId || interfaceId == 0x01ffc9a7;
    }
}
