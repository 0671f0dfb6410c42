// Compile every contracts/*.sol with solc-js (standard JSON) into one artifact per contract:
// fabstir/chain/artifacts/<Name>.json = {contractName, abi, bytecode, sourceSha256}.
// Usage: node contracts/build.mjs [outDir]   (default: fabstir/chain/artifacts)
// Each file holds exactly one deployable contract named after the file; interfaces may sit beside it.
// Sources are self-contained (no imports), so a file's SHA-256 pins everything its bytecode depends on.
import { createHash } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import solc from "solc";

const contractsDir = dirname(fileURLToPath(import.meta.url));
const outDir = resolve(process.argv[2] ?? join(contractsDir, "..", "fabstir", "chain", "artifacts"));

const sourceFiles = readdirSync(contractsDir).filter((name) => name.endsWith(".sol")).sort();
const sources = Object.fromEntries(
  sourceFiles.map((name) => [name, { content: readFileSync(join(contractsDir, name), "utf8") }]),
);

const input = {
  language: "Solidity",
  sources,
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: "cancun",
    outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } },
  },
};

const output = JSON.parse(solc.compile(JSON.stringify(input)));
const problems = output.errors ?? [];
for (const problem of problems) {
  console.error(problem.formattedMessage);
}
if (problems.length > 0) {
  console.error(`solc ${solc.version()}: ${problems.length} error(s)/warning(s); no artifacts written`);
  process.exit(1);
}

mkdirSync(outDir, { recursive: true });
for (const name of sourceFiles) {
  const contractName = basename(name, ".sol");
  const compiled = output.contracts[name];
  const deployable = Object.keys(compiled).filter((c) => compiled[c].evm.bytecode.object !== "");
  if (deployable.length !== 1 || deployable[0] !== contractName) {
    console.error(`${name}: expected one deployable contract named ${contractName}, found [${deployable}]`);
    process.exit(1);
  }
  const artifact = {
    contractName,
    abi: compiled[contractName].abi,
    bytecode: `0x${compiled[contractName].evm.bytecode.object}`,
    sourceSha256: createHash("sha256").update(readFileSync(join(contractsDir, name))).digest("hex"),
  };
  writeFileSync(join(outDir, `${contractName}.json`), `${JSON.stringify(artifact, null, 2)}\n`);
  console.log(`${contractName}: ${(artifact.bytecode.length - 2) / 2} bytes of init code -> ${outDir}`);
}
