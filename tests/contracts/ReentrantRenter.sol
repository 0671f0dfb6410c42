// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// Test-only (never deployed outside tests): the slice of JobMarketplace this contract calls.
interface IJobMarketplace {
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

    function postJob(JobRequest calldata request) external payable returns (uint256 jobId);
    function cancelJob(uint256 jobId) external;
    function withdraw(address token) external returns (uint256 amount);
}

/// @title ReentrantRenter
/// @notice A hostile renter: when the marketplace pays it ETH it calls the marketplace again from
/// inside that payment, or refuses the payment. It records what the re-entry returned so a test
/// can check that the guard, not some later check, stopped it.
contract ReentrantRenter {
    enum Mode {
        ReenterWithdraw,
        ReenterPostJob,
        Refuse
    }

    IJobMarketplace public immutable market;
    Mode public mode;
    uint256 public paymentsReceived;
    bool public reentrySucceeded;
    bytes public reentryRevertData;

    constructor(IJobMarketplace market_) {
        market = market_;
    }

    /// @notice Become owed `msg.value` by the marketplace: post an ETH job and cancel it.
    function postAndCancel(IJobMarketplace.JobRequest calldata request) external payable returns (uint256 jobId) {
        jobId = market.postJob{value: msg.value}(request);
        market.cancelJob(jobId);
    }

    function withdrawAs(Mode mode_) external returns (uint256) {
        mode = mode_;
        return market.withdraw(address(0));
    }

    receive() external payable {
        if (mode == Mode.Refuse) revert("ReentrantRenter: refused");
        paymentsReceived += 1;
        bytes memory reentry = mode == Mode.ReenterWithdraw
            ? abi.encodeCall(IJobMarketplace.withdraw, (address(0)))
            : abi.encodeCall(IJobMarketplace.postJob, (_jobPaidWith(msg.value)));
        uint256 value = mode == Mode.ReenterWithdraw ? 0 : msg.value;
        (bool ok, bytes memory data) = address(market).call{value: value}(reentry);
        reentrySucceeded = ok;
        reentryRevertData = data;
    }

    /// @dev A job postJob would accept from a fresh call: re-entering with it fails only
    /// because of the reentrancy guard.
    function _jobPaidWith(uint256 amount) private view returns (IJobMarketplace.JobRequest memory) {
        return IJobMarketplace.JobRequest({
            host: address(0),
            paymentToken: address(0),
            modelId: bytes32(uint256(1)),
            promptHash: bytes32(uint256(2)),
            promptUri: "reentry",
            maxTokens: 1,
            pricePerToken: amount,
            deposit: amount,
            deadline: uint64(block.timestamp + 3600)
        });
    }
}
