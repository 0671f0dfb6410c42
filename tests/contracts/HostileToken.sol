// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title HostileToken
/// @notice Test-only (never deployed outside tests): an ERC-20 anyone may mint that can be told to
/// misbehave the ways real tokens do: burn a fee from every transfer (so the recipient gets
/// less than was sent), return false instead of moving tokens, or call back into some contract
/// from inside a transfer. The call-back's result is recorded for the test to read.
contract HostileToken {
    uint256 private constant BPS_DENOMINATOR = 10_000;

    mapping(address account => uint256 balance) public balanceOf;
    mapping(address owner => mapping(address spender => uint256 amount)) public allowance;
    uint256 public totalSupply;
    uint256 public feeBps;
    bool public failTransfers;
    address public hookTarget;
    bytes public hookCall;
    bool public hookSucceeded;
    bytes public hookReturnData;

    function mint(address to, uint256 value) external {
        totalSupply += value;
        balanceOf[to] += value;
    }

    function setFeeBps(uint256 feeBps_) external {
        feeBps = feeBps_;
    }

    function setFailTransfers(bool failTransfers_) external {
        failTransfers = failTransfers_;
    }

    /// @notice Call `target` with `data` from inside the next transfer (once).
    function setHook(address target, bytes calldata data) external {
        hookTarget = target;
        hookCall = data;
    }

    function approve(address spender, uint256 value) external returns (bool) {
        allowance[msg.sender][spender] = value;
        return true;
    }

    function transfer(address to, uint256 value) external returns (bool) {
        return _transfer(msg.sender, to, value);
    }

    function transferFrom(address from, address to, uint256 value) external returns (bool) {
        require(allowance[from][msg.sender] >= value, "HostileToken: allowance");
        allowance[from][msg.sender] -= value;
        return _transfer(from, to, value);
    }

    function _transfer(address from, address to, uint256 value) private returns (bool) {
        address target = hookTarget;
        if (target != address(0)) {
            hookTarget = address(0);
            (hookSucceeded, hookReturnData) = target.call(hookCall);
        }
        if (failTransfers) return false;
        require(balanceOf[from] >= value, "HostileToken: balance");
        uint256 fee = value * feeBps / BPS_DENOMINATOR;
        balanceOf[from] -= value;
        balanceOf[to] += value - fee;
        totalSupply -= fee;
        return true;
    }
}
