// Read a standard-JSON compiler input on stdin and print solc-js's standard-JSON output: what a
// native `solc --standard-json` does, so tools that insist on a native solc can run offline.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(join(dirname(fileURLToPath(import.meta.url)), "..", "..", "package.json"));
const solc = require("solc");
if (process.argv.includes("--version")) {
  process.stdout.write(`Version: ${solc.version()}\n`);
  process.exit(0);
}
const input = readFileSync(0, "utf8");
const findImports = (path) => {
  try {
    return { contents: readFileSync(path, "utf8") };
  } catch (error) {
    return { error: String(error) };
  }
};
process.stdout.write(solc.compile(input, { import: findImports }));
