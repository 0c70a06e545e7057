// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity 0.8.28;

import {Eip712} from "./Eip712.sol";
import {IdentityRegistry} from "./IdentityRegistry.sol";
import {IPermitter} from "./IPermitter.sol";

/// @title VerifierPermitter
/// @notice Grants an identity to a requester when an allowed off-chain attestation verifier
///         has signed that a TEE running an allowed image asked for exactly this grant.
///         Works on any EVM chain.
/// @dev Policy, set by the owner:
///      - verifiers: addresses whose EIP-712 `VerifiedEvidence` signatures are trusted;
///      - measurements: allowed image measurements as 32 bytes. SEV-SNP: keccak256 of the
///        48-byte launch digest. TDX: keccak256 of MRTD ‖ RTMR0 ‖ RTMR1 ‖ RTMR2 ‖ RTMR3
///        (5 × 48 bytes; MRTD alone covers only the firmware, not kernel and command line).
///        Development (`none` evidence): keccak256("smart-worker/measurement/none"), accepted
///        only if the owner allows that value (and the verifier allows dev mode);
///      - code hashes: for code-derived identities the identity itself fixes the code hash
///        (`registry.identityForCode(codeHash, this) == identity`); random identities need
///        `setCodeHash`;
///      - the longest permit (`maxDuration`).
///
///      `acquireIdentity(identity, requester, duration, context, authorization)`:
///      `context = abi.encode(bytes32 codeHash, bytes32 nonce)`,
///      `authorization = abi.encode(bytes32 measurement, uint64 verifiedAt, bytes signature)`,
///      the signature being the verifier's over
///      `VerifiedEvidence(bytes32 measurement,bytes32 binding,uint64 verifiedAt)` in the domain
///      ("VerifierPermitter", "1", chain id, this contract), with
///      `binding = keccak256(abi.encode(block.chainid, registry, identity, requester, codeHash, nonce))`.
///      The TEE's evidence commits to `binding`, so the grant cannot be redirected to another
///      requester, identity, code or chain; the nonce is single-use.
contract VerifierPermitter is IPermitter {
    /// @notice Caller is not the owner.
    error NotOwner(address caller);
    /// @notice Only the possessor may release its permit.
    error NotPossessor(address caller, address possessor);
    /// @notice This contract is not the identity's permitter.
    error NotIdentityPermitter(bytes32 identity);
    /// @notice `codeHash` is not the code allowed for `identity`.
    error CodeHashNotAllowed(bytes32 identity, bytes32 codeHash);
    /// @notice The requested permit is longer than `maxDuration`.
    error DurationTooLong(uint64 duration, uint64 maxDuration);
    /// @notice The verifier's timestamp is too far in the past.
    error EvidenceTooOld(uint64 verifiedAt, uint256 now_);
    /// @notice The verifier's timestamp is in the future (beyond the allowed clock skew).
    error EvidenceFromFuture(uint64 verifiedAt, uint256 now_);
    /// @notice The authorization was not signed by an allowed verifier (or not for this binding).
    error VerifierNotAllowed(address signer);
    /// @notice The attested measurement is not allowed.
    error MeasurementNotAllowed(bytes32 measurement);
    /// @notice The nonce was used before.
    error NonceAlreadyUsed(bytes32 nonce);
    /// @notice A zero address where an account is needed.
    error ZeroAddress();

    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);
    event VerifierSet(address indexed verifier, bool allowed);
    event MeasurementSet(bytes32 indexed measurement, bool allowed);
    event CodeHashSet(bytes32 indexed identity, bytes32 codeHash);
    event MaxDurationSet(uint64 maxDuration);
    /// @notice `requester` holds `identity` until `expiry` on the strength of `measurement`.
    event IdentityAcquired(
        bytes32 indexed identity, address indexed requester, bytes32 indexed measurement, uint64 expiry
    );

    bytes32 public constant VERIFIED_EVIDENCE_TYPEHASH =
        keccak256("VerifiedEvidence(bytes32 measurement,bytes32 binding,uint64 verifiedAt)");
    /// @notice How old a verifier's `verifiedAt` may be.
    uint64 public constant MAX_EVIDENCE_AGE = 10 minutes;
    /// @notice How far ahead of the block's timestamp a verifier's clock may be.
    uint64 public constant MAX_CLOCK_SKEW = 2 minutes;
    bytes32 private constant NAME_HASH = keccak256("VerifierPermitter");
    bytes32 private constant VERSION_HASH = keccak256("1");

    /// @notice The registry this permitter grants identities in.
    IdentityRegistry public immutable registry;
    /// @notice Who sets the policy.
    address public owner;
    /// @notice The longest permit this permitter grants, in seconds.
    uint64 public maxDuration;
    /// @notice Allowed verifier signers.
    mapping(address verifier => bool) public isVerifier;
    /// @notice Allowed measurements (32-byte form, see the contract documentation).
    mapping(bytes32 measurement => bool) public isMeasurementAllowed;
    /// @notice The code allowed for a random (not code-derived) identity.
    mapping(bytes32 identity => bytes32) public codeHashOf;
    /// @notice Nonces already used.
    mapping(bytes32 nonce => bool) public nonceUsed;

    /// @param registry_ The identity registry.
    /// @param maxDuration_ The longest permit, in seconds.
    constructor(IdentityRegistry registry_, uint64 maxDuration_) {
        registry = registry_;
        owner = msg.sender;
        maxDuration = maxDuration_;
        emit OwnershipTransferred(address(0), msg.sender);
        emit MaxDurationSet(maxDuration_);
    }

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        _;
    }

    /// @notice Hands the policy to `newOwner`.
    function transferOwnership(address newOwner) external onlyOwner {
        if (newOwner == address(0)) revert ZeroAddress();
        emit OwnershipTransferred(owner, newOwner);
        owner = newOwner;
    }

    /// @notice Allows or disallows a verifier signer.
    function setVerifier(address verifier, bool allowed) external onlyOwner {
        if (verifier == address(0)) revert ZeroAddress();
        isVerifier[verifier] = allowed;
        emit VerifierSet(verifier, allowed);
    }

    /// @notice Allows or disallows a measurement.
    function setMeasurement(bytes32 measurement, bool allowed) external onlyOwner {
        isMeasurementAllowed[measurement] = allowed;
        emit MeasurementSet(measurement, allowed);
    }

    /// @notice Sets the code allowed for a random identity (zero: none).
    function setCodeHash(bytes32 identity, bytes32 codeHash) external onlyOwner {
        codeHashOf[identity] = codeHash;
        emit CodeHashSet(identity, codeHash);
    }

    /// @notice Sets the longest permit, in seconds.
    function setMaxDuration(uint64 maxDuration_) external onlyOwner {
        maxDuration = maxDuration_;
        emit MaxDurationSet(maxDuration_);
    }

    /// @inheritdoc IPermitter
    /// @dev Anyone may submit (e.g. a gas-paying relayer): the evidence binds the requester.
    function acquireIdentity(
        bytes32 identity,
        address requester,
        uint64 duration,
        bytes calldata context,
        bytes calldata authorization
    ) external override returns (uint64 expiry) {
        if (address(registry.getPermitter(identity)) != address(this)) revert NotIdentityPermitter(identity);
        if (duration > maxDuration) revert DurationTooLong(duration, maxDuration);
        (bytes32 codeHash, bytes32 nonce) = abi.decode(context, (bytes32, bytes32));
        _checkCodeHash(identity, codeHash);
        bytes32 measurement = _checkAuthorization(bindingFor(identity, requester, codeHash, nonce), authorization);
        if (nonceUsed[nonce]) revert NonceAlreadyUsed(nonce);
        nonceUsed[nonce] = true;

        expiry = uint64(block.timestamp) + duration;
        registry.grantIdentity(identity, requester, expiry);
        emit IdentityAcquired(identity, requester, measurement, expiry);
    }

    /// @inheritdoc IPermitter
    /// @dev Only the possessor itself may give its permit up (context and authorization unused).
    function releaseIdentity(bytes32 identity, address possessor, bytes calldata, bytes calldata)
        external
        override
    {
        if (msg.sender != possessor) revert NotPossessor(msg.sender, possessor);
        registry.revokeIdentity(identity, possessor);
    }

    /// @inheritdoc IPermitter
    function upstream() external view override returns (address) {
        return address(registry);
    }

    /// @notice ERC-165: IERC165 and Escrin's `IPermitter`.
    function supportsInterface(bytes4 interfaceId) external pure returns (bool) {
        return interfaceId == 0x01ffc9a7 || interfaceId == type(IPermitter).interfaceId;
    }

    /// @notice The value the TEE's evidence must commit to for this grant.
    function bindingFor(bytes32 identity, address requester, bytes32 codeHash, bytes32 nonce)
        public
        view
        returns (bytes32)
    {
        return keccak256(abi.encode(block.chainid, address(registry), identity, requester, codeHash, nonce));
    }

    /// @notice The EIP-712 domain separator: ("VerifierPermitter", "1", chain id, this contract).
    function domainSeparator() public view returns (bytes32) {
        return Eip712.domainSeparator(NAME_HASH, VERSION_HASH);
    }

    /// @notice The EIP-712 digest a verifier signs.
    function verifiedEvidenceDigest(bytes32 measurement, bytes32 binding, uint64 verifiedAt)
        public
        view
        returns (bytes32)
    {
        return Eip712.digest(
            domainSeparator(), keccak256(abi.encode(VERIFIED_EVIDENCE_TYPEHASH, measurement, binding, verifiedAt))
        );
    }

    /// @dev Checks the verifier's signature over (measurement, binding, verifiedAt), its age,
    ///      the signer and the measurement; returns the measurement.
    function _checkAuthorization(bytes32 binding, bytes calldata authorization) private view returns (bytes32) {
        (bytes32 measurement, uint64 verifiedAt, bytes memory signature) =
            abi.decode(authorization, (bytes32, uint64, bytes));
        if (verifiedAt > block.timestamp + MAX_CLOCK_SKEW) revert EvidenceFromFuture(verifiedAt, block.timestamp);
        if (verifiedAt + MAX_EVIDENCE_AGE < block.timestamp) revert EvidenceTooOld(verifiedAt, block.timestamp);
        address signer = Eip712.recover(verifiedEvidenceDigest(measurement, binding, verifiedAt), signature);
        if (!isVerifier[signer]) revert VerifierNotAllowed(signer);
        if (!isMeasurementAllowed[measurement]) revert MeasurementNotAllowed(measurement);
        return measurement;
    }

    function _checkCodeHash(bytes32 identity, bytes32 codeHash) private view {
        if (registry.identityForCode(codeHash, address(this)) == identity) return;
        bytes32 allowed = codeHashOf[identity];
        if (allowed != bytes32(0) && allowed == codeHash) return;
        revert CodeHashNotAllowed(identity, codeHash);
    }
}
