// The browser's forward pass (book/explorer/vae_explorer.js) against Keras.
//
// Run by tests/test_explorer.py (`make unit`), which exports a model and Keras'
// outputs for fixed inputs into a JSON file and runs
//   VAE_EXPLORER_CASES=cases.json node --test tests/js/forward.test.js
// The file holds {model, latents, decoded, images, z_mean, z_log_var, tolerance}.
"use strict";

const assert = require("node:assert/strict");
const fs = require("node:fs");
const path = require("node:path");
const test = require("node:test");

const explorer = require(path.join(__dirname, "..", "..", "book", "explorer", "vae_explorer.js"));

function loadCases() {
  const file = process.env.VAE_EXPLORER_CASES;
  assert.ok(file, "set VAE_EXPLORER_CASES to the JSON file tests/test_explorer.py writes");
  return JSON.parse(fs.readFileSync(file, "utf8"));
}

// The largest |a - b| over every value of every case, and where it is.
function maxAbsDiff(actualRows, expectedRows) {
  let worst = { diff: 0, row: -1, index: -1 };
  assert.equal(actualRows.length, expectedRows.length);
  actualRows.forEach((actual, row) => {
    const expected = expectedRows[row];
    assert.equal(actual.length, expected.length, `case ${row}: length`);
    for (let i = 0; i < expected.length; i++) {
      const diff = Math.abs(actual[i] - expected[i]);
      assert.ok(Number.isFinite(diff), `case ${row}, value ${i}: ${actual[i]}`);
      if (diff > worst.diff) worst = { diff, row, index: i };
    }
  });
  return worst;
}

function report(name, worst, count) {
  // One machine-readable line for the pytest side to quote.
  console.log(`RESULT ${JSON.stringify({ name, max_abs_diff: worst.diff, cases: count })}`);
}

const cases = loadCases();
const model = explorer.loadModel(cases.model);

test("decoder matches Keras on every latent point", () => {
  assert.ok(cases.latents.length >= 20, "at least 20 latent points");
  const decoded = cases.latents.map((z) => model.decode(z));
  const worst = maxAbsDiff(decoded, cases.decoded);
  report("decoder", worst, cases.latents.length);
  assert.ok(worst.diff <= cases.tolerance, `max |JS - Keras| ${worst.diff} at ${JSON.stringify(worst)}`);
});

test("encoder matches Keras on every image (z_mean and z_log_var)", () => {
  assert.ok(cases.images.length >= 20, "at least 20 images");
  const encoded = cases.images.map((image) => model.encode(image));
  const worstMean = maxAbsDiff(encoded.map((e) => e.mean), cases.z_mean);
  const worstLogVar = maxAbsDiff(encoded.map((e) => e.logVar), cases.z_log_var);
  report("z_mean", worstMean, cases.images.length);
  report("z_log_var", worstLogVar, cases.images.length);
  assert.ok(worstMean.diff <= cases.tolerance, `z_mean: ${JSON.stringify(worstMean)}`);
  assert.ok(worstLogVar.diff <= cases.tolerance, `z_log_var: ${JSON.stringify(worstLogVar)}`);
});

test("a layer the pass does not know is refused", () => {
  const spec = JSON.parse(JSON.stringify(cases.model));
  spec.decoder.layers[0].type = "batch_norm";
  assert.throws(() => explorer.loadModel(spec), /unsupported layer batch_norm/);
});

test("centreByMass moves the centre of mass to the middle of the field", () => {
  const image = new Float32Array(28 * 28);
  for (let y = 2; y < 6; y++) for (let x = 3; x < 7; x++) image[y * 28 + x] = 1; // top left
  const centred = explorer.centreByMass(image, 28);
  let total = 0;
  let sy = 0;
  let sx = 0;
  for (let y = 0; y < 28; y++) {
    for (let x = 0; x < 28; x++) {
      const v = centred[y * 28 + x];
      total += v;
      sy += v * (y + 0.5);
      sx += v * (x + 0.5);
    }
  }
  assert.equal(total, 16, "no ink lost");
  assert.equal(sy / total, 14);
  assert.equal(sx / total, 14);
});

test("averageDown averages the alpha of each block into [0, 1]", () => {
  const side = 20;
  const rgba = new Uint8ClampedArray(side * side * 4);
  for (let y = 0; y < 10; y++) for (let x = 0; x < 10; x++) rgba[(y * side + x) * 4 + 3] = 255;
  for (let x = 10; x < 15; x++) rgba[(0 * side + x) * 4 + 3] = 255; // 5 of block (0, 1)'s 100
  const small = explorer.averageDown(rgba, side, 10);
  const expected = [1, 0.05, 0, 0];
  expected.forEach((v, i) => assert.ok(Math.abs(small[i] - v) < 1e-7, `block ${i}: ${small[i]}`));
});
