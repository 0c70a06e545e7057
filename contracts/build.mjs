// Compiles contracts/sol/*.sol with the pinned solc-js and writes contracts/artifacts/<Name>.json
// (ABI + creation and runtime bytecode, hardhat-artifact shaped so alloy's `sol!` reads them).
//
//   node contracts/build.mjs           write the artifacts
//   node contracts/build.mjs --check   compile in memory, exit 1 if a committed artifact differs
//
// solc comes from the npm cache that scripts/setup.sh fills (~/.cache/smart-worker/chain-npm),
// or from $CONTRACTS_NPM_DIR. No network: solc-js is the compiler itself (WebAssembly).
import { createRequire } from 'node:module';
import { readFileSync, readdirSync, writeFileSync, existsSync, mkdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const SOLC_VERSION = '0.8.28+commit.7893614a.Emscripten.clang';
// Contracts that get an artifact (libraries and interfaces are compiled into them).
const CONTRACTS = [
  'IdentityRegistry',
  'OmniKeyStore',
  'VerifierPermitter',
  'TaskHub',
  'EscrinTaskHub',
  'IPermitter',
];

const here = dirname(fileURLToPath(import.meta.url));
const npmDir =
  process.env.CONTRACTS_NPM_DIR ?? join(homedir(), '.cache', 'smart-worker', 'chain-npm');
const require = createRequire(join(npmDir, 'package.json'));
let solc;
try {
  solc = require('solc');
} catch (e) {
  console.error(`solc is not installed in ${npmDir} (run scripts/setup.sh): ${e.message}`);
  process.exit(2);
}
if (solc.version() !== SOLC_VERSION) {
  console.error(`solc ${solc.version()} found, ${SOLC_VERSION} pinned`);
  process.exit(2);
}

const solDir = join(here, 'sol');
const sources = {};
for (const file of readdirSync(solDir).filter((f) => f.endsWith('.sol')).sort()) {
  sources[`sol/${file}`] = { content: readFileSync(join(solDir, file), 'utf8') };
}

const input = {
  language: 'Solidity',
  sources,
  settings: {
    // Sapphire's EVM predates PUSH0 (shanghai): paris bytecode runs on Sapphire and on hardhat.
    evmVersion: 'paris',
    optimizer: { enabled: true, runs: 200 },
    outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] } },
  },
};

const output = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (output.errors ?? []).filter((e) => e.severity === 'error');
for (const e of output.errors ?? []) console.error(e.formattedMessage);
if (errors.length > 0) process.exit(1);

const artifacts = {};
for (const [sourceName, contracts] of Object.entries(output.contracts)) {
  for (const [name, c] of Object.entries(contracts)) {
    if (!CONTRACTS.includes(name)) continue;
    const artifact = {
      _format: 'hh-sol-artifact-1',
      contractName: name,
      sourceName,
      compiler: `solc ${SOLC_VERSION}`,
      abi: c.abi,
      bytecode: `0x${c.evm.bytecode.object}`,
      deployedBytecode: `0x${c.evm.deployedBytecode.object}`,
    };
    artifacts[name] = `${JSON.stringify(artifact, null, 2)}\n`;
  }
}

const outDir = join(here, 'artifacts');
const check = process.argv.includes('--check');
let stale = [];
for (const name of CONTRACTS) {
  const text = artifacts[name];
  if (!text) {
    console.error(`no output for ${name}`);
    process.exit(1);
  }
  const path = join(outDir, `${name}.json`);
  if (check) {
    if (!existsSync(path) || readFileSync(path, 'utf8') !== text) stale.push(name);
  } else {
    mkdirSync(outDir, { recursive: true });
    writeFileSync(path, text);
    console.log(`wrote artifacts/${name}.json`);
  }
}
if (check) {
  if (stale.length > 0) {
    console.error(`artifacts differ from the sources: ${stale.join(', ')} (run node contracts/build.mjs)`);
    process.exit(1);
  }
  console.log(`artifacts match the sources (${CONTRACTS.length} contracts, solc ${SOLC_VERSION})`);
}
