"""Generate the billing verifier contracts from the current circuits; run once per circuit version.

    .venv/bin/python contracts/tools/generate_verifiers.py [--srs FILE] [--new-dev-srs]

For each circuit capacity this builds the keys (``BillingProver.setup``), has EZKL write its
Halo2 verifier, renames the contract to ``BillingVerifier<capacity>`` and marks ``verifyProof``
``view`` (solc's only warning on it; the code only reads), then writes
``contracts/BillingVerifier<capacity>.sol`` and records the verifying keys' SHA-256 in
``fabstir/proofs/verifiers.json`` (a test compares it with the keys built at run time). Finally it
runs ``contracts/build.mjs`` so the artifacts match. Commit all of it.

EZKL compiles the verifier for its ABI with solc 0.8.20 found through svm, which would download
it; ``solc-shim.sh`` answers in its place with the solc-js that ``npm ci`` installed, so it is
linked at ``~/.svm/0.8.20/solc-0.8.20`` first (an existing native solc there is left alone).

Without ``--srs`` the packaged development SRS is used (``--new-dev-srs`` makes a new one with
``ezkl.gen_srs``, which invalidates every committed verifier). For production, pass the ceremony
SRS and deploy the verifiers this writes.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from fabstir.proofs.artifacts import CIRCUIT_LOGROWS, DEV_SRS_PATH, import_ezkl  # noqa: E402
from fabstir.proofs.circuit import BATCH_CAPACITIES, CIRCUIT_VERSION  # noqa: E402
from fabstir.proofs.prover import BillingProver  # noqa: E402

CONTRACTS_DIR = REPO_ROOT / "contracts"
MANIFEST_PATH = REPO_ROOT / "fabstir" / "proofs" / "verifiers.json"
SHIM_PATH = CONTRACTS_DIR / "tools" / "solc-shim.sh"
SVM_SOLC = Path.home() / ".svm" / "0.8.20" / "solc-0.8.20"


def install_solc_shim() -> None:
    if SVM_SOLC.is_symlink() and SVM_SOLC.resolve() == SHIM_PATH.resolve():
        return
    if SVM_SOLC.exists():
        print(f"{SVM_SOLC} exists and is not our shim; EZKL will use it")
        return
    SVM_SOLC.parent.mkdir(parents=True, exist_ok=True)
    SVM_SOLC.symlink_to(SHIM_PATH.resolve())


def verifier_source(generated: str, capacity: int) -> str:
    source, renamed = re.subn(
        r"\bcontract Halo2Verifier\b", f"contract BillingVerifier{capacity}", generated
    )
    source, viewed = re.subn(r"\) public returns \(bool\)", ") public view returns (bool)", source)
    if renamed != 1 or viewed != 1:
        raise SystemExit("EZKL's verifier source changed shape; update verifier_source()")
    return source


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def generate(srs_path: Path) -> dict[str, dict[str, str]]:
    ezkl = import_ezkl()
    manifest: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory(prefix="fabstir-verifiers-") as scratch:
        prover = BillingProver(Path(scratch), srs_path if srs_path != DEV_SRS_PATH else None)
        for capacity in BATCH_CAPACITIES:
            circuit = prover.circuit_dir(capacity)
            sol_path = Path(scratch) / f"verifier-{capacity}.sol"
            await ezkl.create_evm_verifier(
                str(circuit / "vk.key"),
                str(circuit / "settings.json"),
                str(sol_path),
                str(Path(scratch) / f"verifier-{capacity}.abi"),
                str(srs_path),
                reusable=False,
            )
            target = CONTRACTS_DIR / f"BillingVerifier{capacity}.sol"
            target.write_text(verifier_source(sol_path.read_text(), capacity))
            manifest[str(capacity)] = {
                "circuit_version": CIRCUIT_VERSION,
                "vk_sha256": sha256_of(circuit / "vk.key"),
                "srs_sha256": sha256_of(srs_path),
                "source": target.name,
            }
            print(f"{target.relative_to(REPO_ROOT)}: {target.stat().st_size} bytes")
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--srs", type=Path, help="ceremony SRS file (default: the dev SRS)")
    parser.add_argument("--new-dev-srs", action="store_true", help="replace the dev SRS first")
    args = parser.parse_args()
    if args.srs is not None and args.new_dev_srs:
        parser.error("--srs and --new-dev-srs exclude each other")
    if args.srs is not None and not args.srs.is_file():
        parser.error(f"--srs {args.srs}: no such file")
    if args.new_dev_srs or (args.srs is None and not DEV_SRS_PATH.exists()):
        DEV_SRS_PATH.parent.mkdir(parents=True, exist_ok=True)
        import_ezkl().gen_srs(str(DEV_SRS_PATH), CIRCUIT_LOGROWS)
    install_solc_shim()
    manifest = asyncio.run(generate(args.srs or DEV_SRS_PATH))
    MANIFEST_PATH.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    subprocess.run(["node", str(CONTRACTS_DIR / "build.mjs")], cwd=REPO_ROOT, check=True)


if __name__ == "__main__":
    main()
