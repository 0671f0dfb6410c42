// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

interface INodeRegistry {
    function isRegistered(address host) external view returns (bool);
    function priceOf(address host, bytes32 modelId) external view returns (uint256);
}

/// @title JobMarketplace
/// @notice Renters escrow ETH for inference jobs; a registered host claims a job, submits the result
/// and is paid per output token. A protocol fee goes to the treasury and the rest returns to the renter.
contract JobMarketplace {
    enum JobState {
        None,
        Posted,
        Claimed,
        Settled,
        Refunded
    }

    struct Job {
        address renter;
        address host;
        bytes32 modelId;
        bytes32 promptHash;
        string promptUri;
        uint256 maxTokens;
        uint256 pricePerTokenWei;
        uint256 deposit;
        uint64 deadline;
        JobState state;
        bytes32 resultHash;
        string resultUri;
        uint256 tokensUsed;
    }

    uint256 public constant MAX_FEE_BPS = 1_000;
    uint256 private constant BPS_DENOMINATOR = 10_000;

    error ZeroAddress();
    error FeeTooHigh(uint256 feeBps, uint256 maxFeeBps);
    error ZeroDeposit();
    error ZeroMaxTokens();
    error ZeroPrice();
    error MaxCostOverflow(uint256 maxTokens, uint256 pricePerTokenWei);
    error DeadlineInPast(uint64 deadline, uint256 nowTimestamp);
    error UnknownJob(uint256 jobId);
    error NotPosted(uint256 jobId, JobState state);
    error NotClaimed(uint256 jobId, JobState state);
    error NotRefundable(uint256 jobId, JobState state);
    error HostNotRegistered(address host);
    error ModelNotServed(address host, bytes32 modelId);
    error PriceAboveJob(uint256 hostPricePerTokenWei, uint256 jobPricePerTokenWei);
    error InsufficientDeposit(uint256 deposit, uint256 required);
    error DeadlinePassed(uint64 deadline, uint256 nowTimestamp);
    error DeadlineNotReached(uint64 deadline, uint256 nowTimestamp);
    error NotJobHost(address caller, address host);
    error TokensAboveMax(uint256 tokens, uint256 maxTokens);
    error Reentrancy();
    error TransferFailed(address to, uint256 amountWei);

    event JobPosted(
        uint256 indexed jobId,
        address indexed renter,
        bytes32 indexed modelId,
        bytes32 promptHash,
        string promptUri,
        uint256 maxTokens,
        uint256 pricePerTokenWei,
        uint256 deposit,
        uint64 deadline
    );
    event JobClaimed(uint256 indexed jobId, address indexed host);
    event JobSettled(
        uint256 indexed jobId,
        address indexed host,
        uint256 tokens,
        uint256 paymentWei,
        uint256 feeWei,
        uint256 refundWei,
        bytes32 resultHash,
        string resultUri
    );
    event JobRefunded(uint256 indexed jobId, address indexed renter, uint256 amountWei);

    INodeRegistry public immutable nodeRegistry;
    address public immutable treasury;
    uint256 public immutable feeBps;

    /// @notice Number of jobs posted so far; also the id of the latest job (ids start at 1).
    uint256 public jobCount;

    mapping(uint256 jobId => Job job) private _jobs;
    uint256 private _entered;

    modifier nonReentrant() {
        if (_entered != 0) revert Reentrancy();
        _entered = 1;
        _;
        _entered = 0;
    }

    constructor(INodeRegistry nodeRegistry_, address treasury_, uint256 feeBps_) {
        if (address(nodeRegistry_) == address(0) || treasury_ == address(0)) revert ZeroAddress();
        if (feeBps_ > MAX_FEE_BPS) revert FeeTooHigh(feeBps_, MAX_FEE_BPS);
        nodeRegistry = nodeRegistry_;
        treasury = treasury_;
        feeBps = feeBps_;
    }

    /// @notice Escrow `msg.value` for a job. Whether the deposit covers the maximum cost is checked at
    /// claim time, so hosts can see an underfunded job and refuse it.
    function postJob(
        bytes32 modelId,
        bytes32 promptHash,
        string calldata promptUri,
        uint256 maxTokens,
        uint256 pricePerTokenWei,
        uint64 deadline
    ) external payable returns (uint256 jobId) {
        if (msg.value == 0) revert ZeroDeposit();
        if (maxTokens == 0) revert ZeroMaxTokens();
        if (pricePerTokenWei == 0) revert ZeroPrice();
        if (pricePerTokenWei > type(uint256).max / maxTokens) {
            revert MaxCostOverflow(maxTokens, pricePerTokenWei);
        }
        if (deadline <= block.timestamp) revert DeadlineInPast(deadline, block.timestamp);

        jobId = ++jobCount;
        Job storage job = _jobs[jobId];
        job.renter = msg.sender;
        job.modelId = modelId;
        job.promptHash = promptHash;
        job.promptUri = promptUri;
        job.maxTokens = maxTokens;
        job.pricePerTokenWei = pricePerTokenWei;
        job.deposit = msg.value;
        job.deadline = deadline;
        job.state = JobState.Posted;

        emit JobPosted(
            jobId, msg.sender, modelId, promptHash, promptUri, maxTokens, pricePerTokenWei, msg.value, deadline
        );
    }

    /// @notice Take a posted job: the caller must serve its model at or below the job's price, and the
    /// deposit must cover `maxTokens * pricePerTokenWei`.
    function claimJob(uint256 jobId) external {
        Job storage job = _existing(jobId);
        if (job.state != JobState.Posted) revert NotPosted(jobId, job.state);
        if (block.timestamp > job.deadline) revert DeadlinePassed(job.deadline, block.timestamp);
        if (!nodeRegistry.isRegistered(msg.sender)) revert HostNotRegistered(msg.sender);
        uint256 hostPrice = nodeRegistry.priceOf(msg.sender, job.modelId);
        if (hostPrice == 0) revert ModelNotServed(msg.sender, job.modelId);
        if (hostPrice > job.pricePerTokenWei) revert PriceAboveJob(hostPrice, job.pricePerTokenWei);
        uint256 required = job.maxTokens * job.pricePerTokenWei;
        if (job.deposit < required) revert InsufficientDeposit(job.deposit, required);

        job.host = msg.sender;
        job.state = JobState.Claimed;
        emit JobClaimed(jobId, msg.sender);
    }

    /// @notice Record the result of a claimed job and settle it: the host gets `tokens * price` minus the
    /// fee, the treasury gets the fee and the renter gets the rest of the deposit back.
    function submitResult(uint256 jobId, bytes32 resultHash, string calldata resultUri, uint256 tokens)
        external
        nonReentrant
    {
        Job storage job = _existing(jobId);
        if (job.state != JobState.Claimed) revert NotClaimed(jobId, job.state);
        if (msg.sender != job.host) revert NotJobHost(msg.sender, job.host);
        if (tokens > job.maxTokens) revert TokensAboveMax(tokens, job.maxTokens);

        uint256 paymentWei = tokens * job.pricePerTokenWei;
        uint256 feeWei = paymentWei * feeBps / BPS_DENOMINATOR;
        uint256 refundWei = job.deposit - paymentWei;

        job.resultHash = resultHash;
        job.resultUri = resultUri;
        job.tokensUsed = tokens;
        job.state = JobState.Settled;
        emit JobSettled(jobId, msg.sender, tokens, paymentWei, feeWei, refundWei, resultHash, resultUri);

        _pay(msg.sender, paymentWei - feeWei);
        _pay(treasury, feeWei);
        _pay(job.renter, refundWei);
    }

    /// @notice After the deadline, return the whole deposit of a posted or claimed job to its renter.
    function refundExpired(uint256 jobId) external nonReentrant {
        Job storage job = _existing(jobId);
        if (job.state != JobState.Posted && job.state != JobState.Claimed) {
            revert NotRefundable(jobId, job.state);
        }
        if (block.timestamp <= job.deadline) revert DeadlineNotReached(job.deadline, block.timestamp);

        uint256 amountWei = job.deposit;
        job.state = JobState.Refunded;
        emit JobRefunded(jobId, job.renter, amountWei);

        _pay(job.renter, amountWei);
    }

    /// @notice The whole job record; `state` is None for an id that was never posted.
    function getJob(uint256 jobId) external view returns (Job memory) {
        return _jobs[jobId];
    }

    function _existing(uint256 jobId) private view returns (Job storage job) {
        job = _jobs[jobId];
        if (job.state == JobState.None) revert UnknownJob(jobId);
    }

    function _pay(address to, uint256 amountWei) private {
        if (amountWei == 0) return;
        (bool ok,) = to.call{value: amountWei}("");
        if (!ok) revert TransferFailed(to, amountWei);
    }
}
