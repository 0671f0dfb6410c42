// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title ModelRegistry
/// @notice The models hosts may offer: the owner adds a model (SHA-256 of its GGUF, storage URI,
/// name) and may deactivate it. A model's id is keccak256 of its UTF-8 name.
contract ModelRegistry {
    struct Model {
        bytes32 sha256Hash;
        string uri;
        string name;
        bool active;
    }

    error NotOwner(address caller);
    error ZeroAddress();
    error EmptyName();
    error EmptyUri();
    error ZeroHash();
    error ModelExists(bytes32 modelId);
    error UnknownModel(bytes32 modelId);
    error ModelNotActive(bytes32 modelId);

    event ModelAdded(bytes32 indexed modelId, string name, bytes32 sha256Hash, string uri);
    event ModelDeactivated(bytes32 indexed modelId);
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);

    address public owner;
    mapping(bytes32 modelId => Model model) private _models;
    bytes32[] private _modelIds;

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        _;
    }

    constructor() {
        owner = msg.sender;
        emit OwnershipTransferred(address(0), msg.sender);
    }

    function transferOwnership(address newOwner) external onlyOwner {
        if (newOwner == address(0)) revert ZeroAddress();
        emit OwnershipTransferred(owner, newOwner);
        owner = newOwner;
    }

    /// @notice Add a model; its id is keccak256(name). A model is added once, ever.
    function addModel(string calldata name, bytes32 sha256Hash, string calldata uri)
        external
        onlyOwner
        returns (bytes32 modelId)
    {
        if (bytes(name).length == 0) revert EmptyName();
        if (bytes(uri).length == 0) revert EmptyUri();
        if (sha256Hash == bytes32(0)) revert ZeroHash();
        modelId = keccak256(bytes(name));
        if (bytes(_models[modelId].name).length != 0) revert ModelExists(modelId);
        _models[modelId] = Model({sha256Hash: sha256Hash, uri: uri, name: name, active: true});
        _modelIds.push(modelId);
        emit ModelAdded(modelId, name, sha256Hash, uri);
    }

    /// @notice Stop hosts from offering a model; jobs already claimed for it still settle.
    function deactivateModel(bytes32 modelId) external onlyOwner {
        Model storage model = _existing(modelId);
        if (!model.active) revert ModelNotActive(modelId);
        model.active = false;
        emit ModelDeactivated(modelId);
    }

    function getModel(bytes32 modelId) external view returns (Model memory) {
        return _existing(modelId);
    }

    function isActive(bytes32 modelId) external view returns (bool) {
        return _models[modelId].active;
    }

    function modelIds() external view returns (bytes32[] memory) {
        return _modelIds;
    }

    function _existing(bytes32 modelId) private view returns (Model storage model) {
        model = _models[modelId];
        if (bytes(model.name).length == 0) revert UnknownModel(modelId);
    }
}
