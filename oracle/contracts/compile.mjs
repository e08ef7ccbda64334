#!/usr/bin/env node
// Compiles the oracle's contracts with the pinned solc-js and writes one artifact per contract
// (ABI, creation and runtime bytecode, compiler and settings) as JSON.
//
//   node oracle/contracts/compile.mjs [OUT_DIR]     (default: oracle/contracts/build)
//
// solc-js is found at $GROUNDTRUTH_SOLCJS_DIR, else at <repo>/.tools/node_modules/solc, where
// scripts/setup.sh installs it. The output depends only on the sources and the settings below,
// so recompiling reproduces the committed artifacts byte for byte.
import { createRequire } from "node:module";
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const PINNED = "0.8.37+commit.f401782d";
const SOURCES = ["GroundtruthOracle.sol", "SstoreBaseline.sol"];
const SETTINGS = {
  optimizer: { enabled: true, runs: 10000 },
  evmVersion: "cancun",
  metadata: { bytecodeHash: "ipfs" },
  outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
};

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, "..", "..");
const solcDir = process.env.GROUNDTRUTH_SOLCJS_DIR || join(repo, ".tools", "node_modules", "solc");
const require = createRequire(join(solcDir, "package.json"));
let solc;
try {
  solc = require(solcDir);
} catch (e) {
  console.error(`compile: solc-js not found at ${solcDir} (run scripts/setup.sh): ${e.message}`);
  process.exit(2);
}
const version = solc.version();
if (!version.startsWith(PINNED)) {
  console.error(`compile: solc-js ${version}, expected ${PINNED}`);
  process.exit(2);
}

const input = { language: "Solidity", sources: {}, settings: SETTINGS };
for (const name of SOURCES) {
  input.sources[name] = { content: readFileSync(join(here, name), "utf8") };
}
const output = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (output.errors || []).filter((e) => e.severity === "error");
for (const e of output.errors || []) console.error(e.formattedMessage);
if (errors.length > 0) process.exit(1);

const outDir = resolve(process.argv[2] || join(here, "build"));
mkdirSync(outDir, { recursive: true });
for (const name of SOURCES) {
  for (const [contractName, c] of Object.entries(output.contracts[name])) {
    const artifact = {
      contractName,
      sourceName: name,
      compiler: PINNED,
      settings: { optimizer: SETTINGS.optimizer, evmVersion: SETTINGS.evmVersion },
      abi: c.abi,
      bytecode: "0x" + c.evm.bytecode.object,
      deployedBytecode: "0x" + c.evm.deployedBytecode.object,
    };
    writeFileSync(join(outDir, `${contractName}.json`), JSON.stringify(artifact, null, 2) + "\n");
    console.log(`compile: ${contractName}: ${c.evm.deployedBytecode.object.length / 2} bytes runtime`);
  }
}
