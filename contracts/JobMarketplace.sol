// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

interface INodeRegistry {
    function isActive(address host) external view returns (bool);
    function priceOf(address host, bytes32 modelId, address token) external view returns (uint256);
}

/// @notice An EZKL-generated Halo2 verifier of the billing circuit (contracts/BillingVerifier*.sol).
interface IBillingVerifier {
    function verifyProof(bytes calldata proof, uint256[] calldata instances) external view returns (bool);
}

interface IERC20 {
    function transfer(address to, uint256 value) external returns (bool);
    function transferFrom(address from, address to, uint256 value) external returns (bool);
    function balanceOf(address account) external view returns (uint256);
}

/// @title JobMarketplace
/// @notice Renters escrow ETH or an accepted ERC-20 for inference jobs, either open to any eligible
/// host or naming one. The host that claims a job submits its result before the deadline and is
/// credited `tokens * price` minus the protocol fee; the treasury is credited the fee and the
/// renter the rest. A job still open after its deadline can be refunded by anyone to its renter.
/// Nothing is paid without a billing proof that the verifier for its circuit capacity accepts
/// for public instances this contract computes itself (see `_settle`; docs/proofs.md).
/// Every payment is a credit that its owner withdraws (pull), so no settlement can be blocked by
/// a recipient.
contract JobMarketplace {
    enum JobState {
        None,
        Posted,
        Claimed,
        Settled,
        Refunded,
        Cancelled
    }

    /// @dev `host` is zero for an open job, the named host for a direct job.
    struct JobRequest {
        address host;
        address paymentToken;
        bytes32 modelId;
        bytes32 promptHash;
        string promptUri;
        uint256 maxTokens;
        uint256 pricePerToken;
        uint256 deposit;
        uint64 deadline;
    }

    /// @dev Packed so that settling a job writes one slot besides its result hash: the first
    /// slot holds everything settlement changes. The result URI is not stored; it is in the
    /// job's `JobSettled` event, which sits in block `settledBlock`.
    struct Job {
        address renter;
        JobState state;
        uint16 feeBps;
        uint32 tokensUsed;
        uint40 settledBlock; // a block number; 2^40 blocks last millennia even at 10 per second
        address host;
        uint64 deadline;
        uint32 maxTokens;
        address paymentToken;
        uint88 pricePerToken;
        bool rated;
        uint256 deposit;
        bytes32 modelId;
        bytes32 promptHash;
        bytes32 resultHash;
        string promptUri;
    }

    /// @dev One job of a batch submitted with `submitResults`.
    struct ResultSubmission {
        uint256 jobId;
        bytes32 resultHash;
        string resultUri;
        uint256 tokens;
    }

    /// @dev Credits of a settlement call not yet written to storage. Consecutive jobs in one
    /// token add up here (the refund also per renter), so a batch writes each credit once
    /// instead of once per job.
    struct PendingCredits {
        address token;
        address renter;
        uint256 hostEarnings;
        uint256 fee;
        uint256 refund;
    }

    struct Rating {
        uint64 count;
        uint64 scoreSum;
    }

    address public constant ETH = address(0);
    uint256 public constant MAX_FEE_BPS = 1_000;
    uint256 private constant BPS_DENOMINATOR = 10_000;
    /// @notice Largest `maxTokens` a job may ask for.
    uint256 public constant MAX_JOB_TOKENS = type(uint32).max;
    /// @notice Largest price per token a job may offer. With `MAX_JOB_TOKENS` it keeps every
    /// billed amount below 2^120, an exact integer in the billing circuit (whose witness values
    /// are 128-bit integers), and lets a job's price share a storage slot.
    uint256 public constant MAX_PRICE_PER_TOKEN = type(uint88).max;
    // The billing circuit's layout per job (fabstir/proofs/circuit.py): inputs binding, tokens and
    // price; output the amount, tokens times price.
    uint256 private constant INPUTS_PER_JOB = 3;
    uint256 private constant OUTPUTS_PER_JOB = 1;

    error NotOwner(address caller);
    error ZeroAddress();
    error Reentrancy();
    error FeeTooHigh(uint256 feeBps, uint256 maxFeeBps);
    error ZeroDeposit();
    error ZeroMaxTokens();
    error ZeroPrice();
    error MaxTokensTooHigh(uint256 maxTokens, uint256 limit);
    error PriceTooHigh(uint256 pricePerToken, uint256 limit);
    error DeadlineInPast(uint64 deadline, uint256 nowTimestamp);
    error TokenNotAccepted(address token);
    error ValueMismatch(uint256 value, uint256 expected);
    error TransferShortfall(address token, uint256 received, uint256 expected);
    error TokenTransferFailed(address token, address to, uint256 amount);
    error EthTransferFailed(address to, uint256 amount);
    error UnknownJob(uint256 jobId);
    error NotPosted(uint256 jobId, JobState state);
    error NotClaimed(uint256 jobId, JobState state);
    error NotSettled(uint256 jobId, JobState state);
    error NotRefundable(uint256 jobId, JobState state);
    error NotJobRenter(address caller, address renter);
    error NotNamedHost(address caller, address host);
    error HostNotActive(address host);
    error ModelNotServed(address host, bytes32 modelId, address token);
    error PriceAboveJob(uint256 hostPricePerToken, uint256 jobPricePerToken);
    error InsufficientDeposit(uint256 deposit, uint256 required);
    error DeadlinePassed(uint64 deadline, uint256 nowTimestamp);
    error DeadlineNotReached(uint64 deadline, uint256 nowTimestamp);
    error NotJobHost(address caller, address host);
    error TokensAboveMax(uint256 tokens, uint256 maxTokens);
    error ZeroResultHash();
    error AlreadyRated(uint256 jobId);
    error ScoreOutOfRange(uint8 score);
    error NothingToWithdraw(address account, address token);
    error NoVerifier(uint256 capacity);
    error BatchSize(uint256 count, uint256 capacity);
    error InvalidProof();

    event JobPosted(
        uint256 indexed jobId,
        address indexed renter,
        bytes32 indexed modelId,
        address host,
        address paymentToken,
        bytes32 promptHash,
        string promptUri,
        uint256 maxTokens,
        uint256 pricePerToken,
        uint256 deposit,
        uint64 deadline
    );
    event JobClaimed(uint256 indexed jobId, address indexed host, uint16 feeBps);
    event JobSettled(
        uint256 indexed jobId,
        address indexed host,
        uint256 tokens,
        uint256 hostEarnings,
        uint256 fee,
        uint256 refund,
        bytes32 resultHash,
        string resultUri
    );
    event JobRefunded(uint256 indexed jobId, address indexed renter, uint256 amount);
    event JobCancelled(uint256 indexed jobId, address indexed renter, uint256 amount);
    event Withdrawn(address indexed account, address indexed token, uint256 amount);
    event HostRated(uint256 indexed jobId, address indexed host, address indexed renter, uint8 score);
    event FeeChanged(uint256 feeBps);
    event TreasuryChanged(address treasury);
    event TokenAcceptanceChanged(address indexed token, bool accepted);
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);
    event VerifierChanged(uint256 indexed capacity, address verifier);

    INodeRegistry public immutable nodeRegistry;
    address public owner;
    address public treasury;
    uint256 public feeBps;

    /// @notice Number of jobs posted so far; also the id of the latest job (ids start at 1).
    uint256 public jobCount;

    mapping(address token => bool accepted) public acceptedTokens;
    mapping(uint256 jobId => Job job) private _jobs;
    mapping(address account => mapping(address token => uint256 amount)) private _credits;
    mapping(address host => Rating rating) private _ratings;
    /// @notice The verifier of the billing circuit that proves `capacity` jobs at once.
    mapping(uint256 capacity => IBillingVerifier verifier) public verifiers;
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

    constructor(INodeRegistry nodeRegistry_, address treasury_, uint256 feeBps_) {
        if (address(nodeRegistry_) == address(0) || treasury_ == address(0)) revert ZeroAddress();
        if (feeBps_ > MAX_FEE_BPS) revert FeeTooHigh(feeBps_, MAX_FEE_BPS);
        nodeRegistry = nodeRegistry_;
        owner = msg.sender;
        treasury = treasury_;
        feeBps = feeBps_;
        emit OwnershipTransferred(address(0), msg.sender);
        emit TreasuryChanged(treasury_);
        emit FeeChanged(feeBps_);
    }

    /// @notice Escrow `request.deposit` (as msg.value for ETH, pulled for an ERC-20: approve it
    /// first). Whether the deposit covers `maxTokens * pricePerToken` is checked at claim time, so
    /// hosts can see an underfunded job and refuse it.
    function postJob(JobRequest calldata request) external payable nonReentrant returns (uint256 jobId) {
        if (request.maxTokens == 0) revert ZeroMaxTokens();
        if (request.pricePerToken == 0) revert ZeroPrice();
        if (request.deposit == 0) revert ZeroDeposit();
        if (request.maxTokens > MAX_JOB_TOKENS) revert MaxTokensTooHigh(request.maxTokens, MAX_JOB_TOKENS);
        if (request.pricePerToken > MAX_PRICE_PER_TOKEN) {
            revert PriceTooHigh(request.pricePerToken, MAX_PRICE_PER_TOKEN);
        }
        if (request.deadline <= block.timestamp) revert DeadlineInPast(request.deadline, block.timestamp);
        address token = request.paymentToken;
        if (token == ETH) {
            if (msg.value != request.deposit) revert ValueMismatch(msg.value, request.deposit);
        } else {
            if (!acceptedTokens[token]) revert TokenNotAccepted(token);
            if (msg.value != 0) revert ValueMismatch(msg.value, 0);
        }

        jobId = ++jobCount;
        Job storage job = _jobs[jobId];
        job.renter = msg.sender;
        job.host = request.host;
        job.deadline = request.deadline;
        job.state = JobState.Posted;
        job.paymentToken = token;
        job.modelId = request.modelId;
        job.promptHash = request.promptHash;
        job.promptUri = request.promptUri;
        job.maxTokens = uint32(request.maxTokens);
        job.pricePerToken = uint88(request.pricePerToken);
        job.deposit = request.deposit;
        emit JobPosted(
            jobId,
            msg.sender,
            request.modelId,
            request.host,
            token,
            request.promptHash,
            request.promptUri,
            request.maxTokens,
            request.pricePerToken,
            request.deposit,
            request.deadline
        );

        if (token != ETH) _pullExactly(token, request.deposit);
    }

    /// @notice Take back the deposit of a job nobody has claimed yet.
    function cancelJob(uint256 jobId) external {
        Job storage job = _existing(jobId);
        if (msg.sender != job.renter) revert NotJobRenter(msg.sender, job.renter);
        if (job.state != JobState.Posted) revert NotPosted(jobId, job.state);
        job.state = JobState.Cancelled;
        _credits[job.renter][job.paymentToken] += job.deposit;
        emit JobCancelled(jobId, job.renter, job.deposit);
    }

    /// @notice Take a posted job: the caller must be an active host (the named one for a direct
    /// job) offering its model in its payment token at or below the job's price, and the deposit
    /// must cover `maxTokens * pricePerToken`. The current fee is fixed for the job here.
    function claimJob(uint256 jobId) external {
        Job storage job = _existing(jobId);
        if (job.state != JobState.Posted) revert NotPosted(jobId, job.state);
        if (block.timestamp > job.deadline) revert DeadlinePassed(job.deadline, block.timestamp);
        if (job.host != address(0) && job.host != msg.sender) revert NotNamedHost(msg.sender, job.host);
        if (!nodeRegistry.isActive(msg.sender)) revert HostNotActive(msg.sender);
        uint256 hostPrice = nodeRegistry.priceOf(msg.sender, job.modelId, job.paymentToken);
        if (hostPrice == 0) revert ModelNotServed(msg.sender, job.modelId, job.paymentToken);
        if (hostPrice > job.pricePerToken) revert PriceAboveJob(hostPrice, job.pricePerToken);
        uint256 required = uint256(job.maxTokens) * job.pricePerToken; // widened: above uint88
        if (job.deposit < required) revert InsufficientDeposit(job.deposit, required);

        job.host = msg.sender;
        job.state = JobState.Claimed;
        job.feeBps = uint16(feeBps);
        emit JobClaimed(jobId, msg.sender, uint16(feeBps));
    }

    /// @notice Record the result of a claimed job before its deadline and settle it, once: the host
    /// is credited `tokens * price` minus the fee, the treasury the fee, the renter the rest.
    /// `proof` is a billing proof of this job alone (the 1-job circuit).
    function submitResult(
        uint256 jobId,
        bytes32 resultHash,
        string calldata resultUri,
        uint256 tokens,
        bytes calldata proof
    ) external {
        uint256[] memory instances = new uint256[](INPUTS_PER_JOB + OUTPUTS_PER_JOB);
        PendingCredits memory credits;
        _settle(jobId, resultHash, resultUri, tokens, instances, 0, 1, credits);
        _writeCredits(credits);
        _verifyProof(1, proof, instances);
    }

    /// @notice Settle several claimed jobs of the caller with one billing proof made by the
    /// `capacity`-job circuit (unused slots are all zero). All settle, or none.
    function submitResults(ResultSubmission[] calldata results, uint256 capacity, bytes calldata proof)
        external
    {
        uint256 count = results.length;
        if (count == 0 || count > capacity) revert BatchSize(count, capacity);
        uint256[] memory instances = new uint256[](capacity * (INPUTS_PER_JOB + OUTPUTS_PER_JOB));
        PendingCredits memory credits;
        for (uint256 slot = 0; slot < count; ++slot) {
            ResultSubmission calldata result = results[slot];
            _settle(
                result.jobId, result.resultHash, result.resultUri, result.tokens, instances, slot, capacity, credits
            );
        }
        _writeCredits(credits);
        _verifyProof(capacity, proof, instances);
    }

    /// @notice After the deadline, credit the whole deposit of a posted or claimed job back to its
    /// renter. Anyone may call it.
    function refundExpired(uint256 jobId) external {
        Job storage job = _existing(jobId);
        if (job.state != JobState.Posted && job.state != JobState.Claimed) {
            revert NotRefundable(jobId, job.state);
        }
        if (block.timestamp <= job.deadline) revert DeadlineNotReached(job.deadline, block.timestamp);
        job.state = JobState.Refunded;
        _credits[job.renter][job.paymentToken] += job.deposit;
        emit JobRefunded(jobId, job.renter, job.deposit);
    }

    /// @notice Pay the caller everything credited to it in `token` (address(0) = ETH).
    function withdraw(address token) external nonReentrant returns (uint256 amount) {
        amount = _credits[msg.sender][token];
        if (amount == 0) revert NothingToWithdraw(msg.sender, token);
        _credits[msg.sender][token] = 0;
        emit Withdrawn(msg.sender, token, amount);
        if (token == ETH) {
            (bool ok,) = msg.sender.call{value: amount}("");
            if (!ok) revert EthTransferFailed(msg.sender, amount);
        } else if (!_callToken(token, abi.encodeCall(IERC20.transfer, (msg.sender, amount)))) {
            revert TokenTransferFailed(token, msg.sender, amount);
        }
    }

    /// @notice The renter of a settled job rates its host once, 1 to 5.
    function rateHost(uint256 jobId, uint8 score) external {
        Job storage job = _existing(jobId);
        if (job.state != JobState.Settled) revert NotSettled(jobId, job.state);
        if (msg.sender != job.renter) revert NotJobRenter(msg.sender, job.renter);
        if (job.rated) revert AlreadyRated(jobId);
        if (score < 1 || score > 5) revert ScoreOutOfRange(score);
        job.rated = true;
        Rating storage rating = _ratings[job.host];
        rating.count += 1;
        rating.scoreSum += score;
        emit HostRated(jobId, job.host, msg.sender, score);
    }

    function setFee(uint256 feeBps_) external onlyOwner {
        if (feeBps_ > MAX_FEE_BPS) revert FeeTooHigh(feeBps_, MAX_FEE_BPS);
        feeBps = feeBps_;
        emit FeeChanged(feeBps_);
    }

    function setTreasury(address treasury_) external onlyOwner {
        if (treasury_ == address(0)) revert ZeroAddress();
        treasury = treasury_;
        emit TreasuryChanged(treasury_);
    }

    function setTokenAccepted(address token, bool accepted) external onlyOwner {
        if (token == ETH) revert ZeroAddress();
        acceptedTokens[token] = accepted;
        emit TokenAcceptanceChanged(token, accepted);
    }

    /// @notice Set the verifier of the `capacity`-job billing circuit (zero disables that size).
    function setVerifier(uint256 capacity, IBillingVerifier verifier) external onlyOwner {
        verifiers[capacity] = verifier;
        emit VerifierChanged(capacity, address(verifier));
    }

    function transferOwnership(address newOwner) external onlyOwner {
        if (newOwner == address(0)) revert ZeroAddress();
        emit OwnershipTransferred(owner, newOwner);
        owner = newOwner;
    }

    /// @notice The whole job record; `state` is None for an id that was never posted. A settled
    /// job's result URI is in its `JobSettled` event, in block `settledBlock`.
    function getJob(uint256 jobId) external view returns (Job memory) {
        return _jobs[jobId];
    }

    /// @notice What `account` can withdraw in `token`.
    function creditOf(address account, address token) external view returns (uint256) {
        return _credits[account][token];
    }

    function ratingOf(address host) external view returns (Rating memory) {
        return _ratings[host];
    }

    /// @dev Check and settle one job, add its credits to `credits` and write its public instances
    /// at `slot` of a proof of the `capacity`-job circuit (`_writeInstances`).
    function _settle(
        uint256 jobId,
        bytes32 resultHash,
        string calldata resultUri,
        uint256 tokens,
        uint256[] memory instances,
        uint256 slot,
        uint256 capacity,
        PendingCredits memory credits
    ) private {
        Job storage job = _existing(jobId);
        if (job.state != JobState.Claimed) revert NotClaimed(jobId, job.state);
        if (msg.sender != job.host) revert NotJobHost(msg.sender, job.host);
        if (block.timestamp > job.deadline) revert DeadlinePassed(job.deadline, block.timestamp);
        if (tokens > job.maxTokens) revert TokensAboveMax(tokens, job.maxTokens);
        if (resultHash == bytes32(0)) revert ZeroResultHash();
        _writeInstances(job, jobId, resultHash, tokens, instances, slot, capacity);
        _record(job, jobId, resultHash, resultUri, tokens, credits);
    }

    function _record(
        Job storage job,
        uint256 jobId,
        bytes32 resultHash,
        string calldata resultUri,
        uint256 tokens,
        PendingCredits memory credits
    ) private {
        job.state = JobState.Settled;
        job.tokensUsed = uint32(tokens); // tokens <= maxTokens < 2^32
        job.settledBlock = uint40(block.number);
        job.resultHash = resultHash;
        (uint256 hostEarnings, uint256 fee, uint256 refund) = _creditSettlement(job, tokens, credits);
        emit JobSettled(jobId, msg.sender, tokens, hostEarnings, fee, refund, resultHash, resultUri);
    }

    /// @dev EZKL orders a proof's instances as all inputs (3 per slot), then all outputs (1 per
    /// slot). The binding is keccak256(job id, model id, prompt hash, result hash) without its
    /// low 8 bits, so it is below the BN254 scalar field.
    function _writeInstances(
        Job storage job,
        uint256 jobId,
        bytes32 resultHash,
        uint256 tokens,
        uint256[] memory instances,
        uint256 slot,
        uint256 capacity
    ) private view {
        uint256 price = job.pricePerToken;
        uint256 inputs = slot * INPUTS_PER_JOB;
        instances[inputs] = uint256(keccak256(abi.encode(jobId, job.modelId, job.promptHash, resultHash))) >> 8;
        instances[inputs + 1] = tokens;
        instances[inputs + 2] = price;
        instances[capacity * INPUTS_PER_JOB + slot] = tokens * price;
    }

    /// @dev The verifier reverts (rather than returning false) on most invalid proofs; both mean
    /// InvalidProof, and the revert undoes every settlement of the call.
    function _verifyProof(uint256 capacity, bytes calldata proof, uint256[] memory instances) private view {
        IBillingVerifier verifier = verifiers[capacity];
        if (address(verifier) == address(0)) revert NoVerifier(capacity);
        try verifier.verifyProof(proof, instances) returns (bool valid) {
            if (!valid) revert InvalidProof();
        } catch {
            revert InvalidProof();
        }
    }

    /// @dev Add a settled job's payment split to `credits`. The caller is the host of every job
    /// it settles, so only the token and the renter decide when pending credits must be written
    /// first.
    function _creditSettlement(Job storage job, uint256 tokens, PendingCredits memory credits)
        private
        returns (uint256 hostEarnings, uint256 fee, uint256 refund)
    {
        uint256 payment = tokens * job.pricePerToken;
        fee = payment * job.feeBps / BPS_DENOMINATOR;
        hostEarnings = payment - fee;
        refund = job.deposit - payment;
        address token = job.paymentToken;
        address renter = job.renter;
        if (token != credits.token) {
            _writeCredits(credits);
            credits.token = token;
            credits.renter = renter;
        } else if (renter != credits.renter) {
            _credit(credits.renter, token, credits.refund);
            credits.refund = 0;
            credits.renter = renter;
        }
        credits.hostEarnings += hostEarnings;
        credits.fee += fee;
        credits.refund += refund;
    }

    function _writeCredits(PendingCredits memory credits) private {
        _credit(msg.sender, credits.token, credits.hostEarnings);
        _credit(treasury, credits.token, credits.fee);
        _credit(credits.renter, credits.token, credits.refund);
        credits.hostEarnings = 0;
        credits.fee = 0;
        credits.refund = 0;
    }

    function _credit(address account, address token, uint256 amount) private {
        if (amount != 0) _credits[account][token] += amount;
    }

    function _existing(uint256 jobId) private view returns (Job storage job) {
        job = _jobs[jobId];
        if (job.state == JobState.None) revert UnknownJob(jobId);
    }

    /// @dev Escrow exactly `amount`: a token that delivers less (a transfer fee) is refused, so
    /// the contract never owes more than it holds.
    function _pullExactly(address token, uint256 amount) private {
        uint256 before = IERC20(token).balanceOf(address(this));
        if (!_callToken(token, abi.encodeCall(IERC20.transferFrom, (msg.sender, address(this), amount)))) {
            revert TokenTransferFailed(token, address(this), amount);
        }
        uint256 received = IERC20(token).balanceOf(address(this)) - before;
        if (received != amount) revert TransferShortfall(token, received, amount);
    }

    /// @dev Passes the token's own revert on, and accepts tokens that return nothing as well as
    /// those that return true.
    function _callToken(address token, bytes memory data) private returns (bool) {
        (bool ok, bytes memory ret) = token.call(data);
        if (!ok) {
            assembly ("memory-safe") {
                revert(add(ret, 0x20), mload(ret))
            }
        }
        return ret.length == 0 ? token.code.length > 0 : abi.decode(ret, (bool));
    }
}
