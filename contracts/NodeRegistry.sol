// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title NodeRegistry
/// @notice Hosts list the models they serve, each with a price per output token in wei.
/// Registering again replaces the host's whole model list.
contract NodeRegistry {
    error EmptyModels();
    error LengthMismatch(uint256 modelCount, uint256 priceCount);
    error ZeroPrice(bytes32 modelId);
    error DuplicateModel(bytes32 modelId);

    event HostRegistered(address indexed host, bytes32[] modelIds, uint256[] pricesPerTokenWei);

    mapping(address host => bytes32[] modelIds) private _modelsOf;
    mapping(address host => mapping(bytes32 modelId => uint256 pricePerTokenWei)) private _priceOf;

    /// @notice Register (or re-register) the caller with the models it serves and their prices.
    function register(bytes32[] calldata modelIds, uint256[] calldata pricesPerTokenWei) external {
        if (modelIds.length == 0) revert EmptyModels();
        if (modelIds.length != pricesPerTokenWei.length) {
            revert LengthMismatch(modelIds.length, pricesPerTokenWei.length);
        }

        bytes32[] storage current = _modelsOf[msg.sender];
        for (uint256 i = 0; i < current.length; i++) {
            delete _priceOf[msg.sender][current[i]];
        }
        delete _modelsOf[msg.sender];

        for (uint256 i = 0; i < modelIds.length; i++) {
            bytes32 modelId = modelIds[i];
            uint256 price = pricesPerTokenWei[i];
            if (price == 0) revert ZeroPrice(modelId);
            if (_priceOf[msg.sender][modelId] != 0) revert DuplicateModel(modelId);
            _priceOf[msg.sender][modelId] = price;
            current.push(modelId);
        }

        emit HostRegistered(msg.sender, modelIds, pricesPerTokenWei);
    }

    /// @notice Whether `host` serves at least one model.
    function isRegistered(address host) external view returns (bool) {
        return _modelsOf[host].length > 0;
    }

    /// @notice The host's price per output token for `modelId`; 0 when the host does not serve it.
    function priceOf(address host, bytes32 modelId) external view returns (uint256) {
        return _priceOf[host][modelId];
    }

    /// @notice The model ids the host serves, in registration order.
    function modelsOf(address host) external view returns (bytes32[] memory) {
        return _modelsOf[host];
    }
}
