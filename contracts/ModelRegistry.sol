// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title ModelRegistry
/// @notice The models hosts may offer: the owner adds a model (SHA-256 of its GGUF, storage URI,
/// name), may point it at a new version and may deactivate it. A model's id is keccak256 of its
/// UTF-8 name. A LoRA adapter is a model of its own (its own name, hash and URI) that names the
/// base model it applies to; a base model names none (zero).
contract ModelRegistry {
    struct Model {
        bytes32 sha256Hash;
        string uri;
        string name;
        bool active;
        bytes32 baseModelId;
    }

    error NotOwner(address caller);
    error ZeroAddress();
    error EmptyName();
    error EmptyUri();
    error ZeroHash();
    error ModelExists(bytes32 modelId);
    error UnknownModel(bytes32 modelId);
    error ModelNotActive(bytes32 modelId);
    error BaseIsAdapter(bytes32 baseModelId);
    error NothingChanged(bytes32 modelId);

    event ModelAdded(
        bytes32 indexed modelId, string name, bytes32 sha256Hash, string uri, bytes32 baseModelId
    );
    event ModelUpdated(bytes32 indexed modelId, bytes32 sha256Hash, string uri);
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
    /// @param baseModelId For a LoRA adapter, the active base model it applies to; else zero.
    function addModel(
        string calldata name,
        bytes32 sha256Hash,
        string calldata uri,
        bytes32 baseModelId
    ) external onlyOwner returns (bytes32 modelId) {
        if (bytes(name).length == 0) revert EmptyName();
        _checkVersion(sha256Hash, uri);
        if (baseModelId != bytes32(0)) {
            Model storage base = _existing(baseModelId);
            if (!base.active) revert ModelNotActive(baseModelId);
            // llama.cpp applies an adapter to base weights, never to another adapter.
            if (base.baseModelId != bytes32(0)) revert BaseIsAdapter(baseModelId);
        }
        modelId = keccak256(bytes(name));
        if (bytes(_models[modelId].name).length != 0) revert ModelExists(modelId);
        _models[modelId] = Model({
            sha256Hash: sha256Hash, uri: uri, name: name, active: true, baseModelId: baseModelId
        });
        _modelIds.push(modelId);
        emit ModelAdded(modelId, name, sha256Hash, uri, baseModelId);
    }

    /// @notice Point an active model at a new version (new bytes, or the same bytes moved).
    /// Hosts verify and switch new jobs to it; jobs already running finish on the old version.
    function updateModel(bytes32 modelId, bytes32 sha256Hash, string calldata uri)
        external
        onlyOwner
    {
        Model storage model = _existing(modelId);
        if (!model.active) revert ModelNotActive(modelId);
        _checkVersion(sha256Hash, uri);
        bool sameUri = keccak256(bytes(model.uri)) == keccak256(bytes(uri));
        if (model.sha256Hash == sha256Hash && sameUri) revert NothingChanged(modelId);
        model.sha256Hash = sha256Hash;
        model.uri = uri;
        emit ModelUpdated(modelId, sha256Hash, uri);
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

    function _checkVersion(bytes32 sha256Hash, string calldata uri) private pure {
        if (bytes(uri).length == 0) revert EmptyUri();
        if (sha256Hash == bytes32(0)) revert ZeroHash();
    }

    function _existing(bytes32 modelId) private view returns (Model storage model) {
        model = _models[modelId];
        if (bytes(model.name).length == 0) revert UnknownModel(modelId);
    }
}
