// Validate a .glb with the Khronos glTF validator (npm package gltf-validator); prints its report's
// issue counts as JSON. Usage: node tests/gltf_validate.js FILE.glb (NODE_PATH: where it is installed).
const fs = require("fs");
const validator = require("gltf-validator");
validator
  .validateBytes(new Uint8Array(fs.readFileSync(process.argv[2])))
  .then((report) => {
    const issues = report.issues;
    console.log(JSON.stringify({ errors: issues.numErrors, warnings: issues.numWarnings,
      messages: issues.messages.filter((m) => m.severity <= 1) }));
  })
  .catch((e) => { console.error(String(e)); process.exit(1); });
