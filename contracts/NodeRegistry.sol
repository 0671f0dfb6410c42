// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

interface IERC20 {
    function transfer(address to, uint256 value) external returns (bool);
    function transferFrom(address from, address to, uint256 value) external returns (bool);
}

interface IModelRegistry {
    function isActive(bytes32 modelId) external view returns (bool);
}

/// @title NodeRegistry
/// @notice Hosts stake the staking token to register, offer registry models at a price per output
/// token in each payment token (address(0) = ETH), and advertise a region, API URL and metadata
/// URI. Unregistering starts a cool-down after which the stake can be withdrawn.
contract NodeRegistry {
    struct Offer {
        bytes32 modelId;
        address token;
        uint256 pricePerToken;
    }

    struct Node {
        uint256 stake;
        uint64 unlockAt;
        bool registered;
        string region;
        string apiUrl;
        string metadataUri;
    }

    uint256 public constant MAX_OFFERS = 32;
    uint64 public constant MAX_COOLDOWN = 90 days;

    error NotOwner(address caller);
    error ZeroAddress();
    error Reentrancy();
    error AlreadyRegistered(address host);
    error NotRegistered(address host);
    error Unregistering(address host, uint64 unlockAt);
    error NotUnregistering(address host);
    error CooldownNotOver(uint64 unlockAt, uint256 nowTimestamp);
    error CooldownTooLong(uint64 cooldown, uint64 maxCooldown);
    error StakeBelowMinimum(uint256 stake, uint256 minStake);
    error ZeroAmount();
    error EmptyOffers();
    error TooManyOffers(uint256 count, uint256 maxCount);
    error ZeroPrice(bytes32 modelId, address token);
    error DuplicateOffer(bytes32 modelId, address token);
    error ModelNotActive(bytes32 modelId);
    error EmptyApiUrl();
    error TokenTransferFailed(address token, address from, address to, uint256 amount);

    event NodeRegistered(address indexed host, uint256 stake, string region, string apiUrl, string metadataUri);
    event OffersUpdated(address indexed host, Offer[] offers);
    event InfoUpdated(address indexed host, string region, string apiUrl, string metadataUri);
    event StakeAdded(address indexed host, uint256 amount, uint256 stake);
    event UnregisterRequested(address indexed host, uint64 unlockAt);
    event StakeWithdrawn(address indexed host, uint256 amount);
    event MinStakeChanged(uint256 minStake);
    event CooldownChanged(uint64 cooldown);
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);

    IERC20 public immutable stakingToken;
    IModelRegistry public immutable modelRegistry;
    address public owner;
    uint256 public minStake;
    uint64 public cooldown;

    mapping(address host => Node node) private _nodes;
    mapping(address host => Offer[] offers) private _offers;
    mapping(address host => mapping(bytes32 modelId => mapping(address token => uint256 price))) private _prices;
    bool private transient _entered;

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        _;
    }

    modifier nonReentrant() {
        if (_entered) revert Reentrancy();
        _entered = true;
        _;
        _entered = false;
    }

    constructor(IERC20 stakingToken_, IModelRegistry modelRegistry_, uint256 minStake_, uint64 cooldown_) {
        if (address(stakingToken_) == address(0) || address(modelRegistry_) == address(0)) revert ZeroAddress();
        if (cooldown_ > MAX_COOLDOWN) revert CooldownTooLong(cooldown_, MAX_COOLDOWN);
        stakingToken = stakingToken_;
        modelRegistry = modelRegistry_;
        owner = msg.sender;
        minStake = minStake_;
        cooldown = cooldown_;
        emit OwnershipTransferred(address(0), msg.sender);
        emit MinStakeChanged(minStake_);
        emit CooldownChanged(cooldown_);
    }

    /// @notice Register the caller, pulling `stake` staking tokens (approve them first).
    function register(
        uint256 stake,
        Offer[] calldata offers,
        string calldata region,
        string calldata apiUrl,
        string calldata metadataUri
    ) external nonReentrant {
        Node storage node = _nodes[msg.sender];
        if (node.registered) revert AlreadyRegistered(msg.sender);
        if (stake < minStake || stake == 0) revert StakeBelowMinimum(stake, minStake);
        if (bytes(apiUrl).length == 0) revert EmptyApiUrl();
        node.registered = true;
        node.stake = stake;
        node.region = region;
        node.apiUrl = apiUrl;
        node.metadataUri = metadataUri;
        _setOffers(offers);
        emit NodeRegistered(msg.sender, stake, region, apiUrl, metadataUri);
        _pull(stake);
    }

    /// @notice Replace the caller's whole offer list.
    function updateOffers(Offer[] calldata offers) external {
        _activeNode(msg.sender);
        _setOffers(offers);
    }

    function updateInfo(string calldata region, string calldata apiUrl, string calldata metadataUri) external {
        Node storage node = _activeNode(msg.sender);
        if (bytes(apiUrl).length == 0) revert EmptyApiUrl();
        node.region = region;
        node.apiUrl = apiUrl;
        node.metadataUri = metadataUri;
        emit InfoUpdated(msg.sender, region, apiUrl, metadataUri);
    }

    function addStake(uint256 amount) external nonReentrant {
        Node storage node = _activeNode(msg.sender);
        if (amount == 0) revert ZeroAmount();
        node.stake += amount;
        emit StakeAdded(msg.sender, amount, node.stake);
        _pull(amount);
    }

    /// @notice Stop taking jobs now; the stake can be withdrawn once the cool-down is over.
    function unregister() external {
        Node storage node = _activeNode(msg.sender);
        uint64 unlockAt = uint64(block.timestamp) + cooldown;
        node.unlockAt = unlockAt;
        emit UnregisterRequested(msg.sender, unlockAt);
    }

    /// @notice After the cool-down, return the whole stake and forget the node and its offers.
    function withdrawStake() external nonReentrant {
        Node storage node = _nodes[msg.sender];
        if (!node.registered) revert NotRegistered(msg.sender);
        if (node.unlockAt == 0) revert NotUnregistering(msg.sender);
        if (block.timestamp < node.unlockAt) revert CooldownNotOver(node.unlockAt, block.timestamp);
        uint256 amount = node.stake;
        _clearOffers(msg.sender);
        delete _nodes[msg.sender];
        emit StakeWithdrawn(msg.sender, amount);
        if (!_callToken(abi.encodeCall(IERC20.transfer, (msg.sender, amount)))) {
            revert TokenTransferFailed(address(stakingToken), address(this), msg.sender, amount);
        }
    }

    function setMinStake(uint256 minStake_) external onlyOwner {
        minStake = minStake_;
        emit MinStakeChanged(minStake_);
    }

    function setCooldown(uint64 cooldown_) external onlyOwner {
        if (cooldown_ > MAX_COOLDOWN) revert CooldownTooLong(cooldown_, MAX_COOLDOWN);
        cooldown = cooldown_;
        emit CooldownChanged(cooldown_);
    }

    function transferOwnership(address newOwner) external onlyOwner {
        if (newOwner == address(0)) revert ZeroAddress();
        emit OwnershipTransferred(owner, newOwner);
        owner = newOwner;
    }

    /// @notice Registered, not unregistering, and staked at least the current minimum.
    function isActive(address host) public view returns (bool) {
        Node storage node = _nodes[host];
        return node.registered && node.unlockAt == 0 && node.stake >= minStake;
    }

    /// @notice The host's price per output token for a model in `token`; 0 when the host does not
    /// offer it or the model registry deactivated the model.
    function priceOf(address host, bytes32 modelId, address token) external view returns (uint256) {
        uint256 price = _prices[host][modelId][token];
        if (price == 0 || !modelRegistry.isActive(modelId)) return 0;
        return price;
    }

    function getNode(address host) external view returns (Node memory) {
        return _nodes[host];
    }

    function offersOf(address host) external view returns (Offer[] memory) {
        return _offers[host];
    }

    function _activeNode(address host) private view returns (Node storage node) {
        node = _nodes[host];
        if (!node.registered) revert NotRegistered(host);
        if (node.unlockAt != 0) revert Unregistering(host, node.unlockAt);
    }

    function _setOffers(Offer[] calldata offers) private {
        if (offers.length == 0) revert EmptyOffers();
        if (offers.length > MAX_OFFERS) revert TooManyOffers(offers.length, MAX_OFFERS);
        _clearOffers(msg.sender);
        mapping(bytes32 => mapping(address => uint256)) storage prices = _prices[msg.sender];
        Offer[] storage stored = _offers[msg.sender];
        for (uint256 i = 0; i < offers.length; i++) {
            Offer calldata offer = offers[i];
            if (offer.pricePerToken == 0) revert ZeroPrice(offer.modelId, offer.token);
            if (prices[offer.modelId][offer.token] != 0) revert DuplicateOffer(offer.modelId, offer.token);
            if (!modelRegistry.isActive(offer.modelId)) revert ModelNotActive(offer.modelId);
            prices[offer.modelId][offer.token] = offer.pricePerToken;
            stored.push(offer);
        }
        emit OffersUpdated(msg.sender, offers);
    }

    function _clearOffers(address host) private {
        Offer[] storage stored = _offers[host];
        for (uint256 i = 0; i < stored.length; i++) {
            delete _prices[host][stored[i].modelId][stored[i].token];
        }
        delete _offers[host];
    }

    function _pull(uint256 amount) private {
        if (!_callToken(abi.encodeCall(IERC20.transferFrom, (msg.sender, address(this), amount)))) {
            revert TokenTransferFailed(address(stakingToken), msg.sender, address(this), amount);
        }
    }

    /// @dev Passes the token's own revert on (e.g. its InsufficientBalance), and accepts tokens
    /// that return nothing as well as those that return true.
    function _callToken(bytes memory data) private returns (bool) {
        (bool ok, bytes memory ret) = address(stakingToken).call(data);
        if (!ok) {
            assembly ("memory-safe") {
                revert(add(ret, 0x20), mload(ret))
            }
        }
        return ret.length == 0 ? address(stakingToken).code.length > 0 : abi.decode(ret, (bool));
    }
}
