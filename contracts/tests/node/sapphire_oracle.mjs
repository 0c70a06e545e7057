// Test oracle for contracts/src/sapphire.rs: runs the official Sapphire JS client
// (@oasisprotocol/sapphire-paratime, pinned in contracts/npm/package.json) on fixed inputs.
//
//   node sapphire_oracle.mjs '<json>'    (npm dir from $CONTRACTS_NPM_DIR)
//
// Input: {clientSecret, runtimeSecret, epoch, nonce, calldata, output} (hex, epoch a number).
// Output (hex): the client's envelope for `calldata` under `nonce`; what the runtime side
// decrypts from it; a result for `output` that the runtime side encrypted (random nonce); and
// the runtime's public key.
import { createRequire } from 'node:module';
import { join } from 'node:path';

const require = createRequire(join(process.env.CONTRACTS_NPM_DIR, 'package.json'));
const sapphire = require('@oasisprotocol/sapphire-paratime');
const { X25519DeoxysII, boxKeyPairFromSecretKey, getBytes, hexlify } = sapphire;

const input = JSON.parse(process.argv[2]);
const runtimePublic = boxKeyPairFromSecretKey(getBytes(input.runtimeSecret)).publicKey;
const client = X25519DeoxysII.fromSecretKey(input.clientSecret, runtimePublic, input.epoch);
const envelope = client.encryptCall(getBytes(input.calldata), getBytes(input.nonce));

// The runtime's side: its secret with the client's public key gives the same shared key.
const runtime = X25519DeoxysII.fromSecretKey(input.runtimeSecret, client.publicKey);
const decrypted = runtime.decryptCall(envelope);
const result = runtime.encryptResult(getBytes(input.output));

console.log(
  JSON.stringify({
    runtimePublic: hexlify(runtimePublic),
    clientPublic: hexlify(client.publicKey),
    envelope: hexlify(envelope),
    decrypted: hexlify(decrypted),
    result: hexlify(result),
  }),
);
