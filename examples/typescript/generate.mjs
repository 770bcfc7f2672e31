// Generates schema.d.ts (the types openapi-fetch uses) from jetway's OpenAPI document, with the
// payload typed as bytes: openapi-typescript's default for `format: binary` is `string`, which is
// not what a byte-exact publish or raw read carries.
//
//   node generate.mjs ../../openapi/openapi.json schema.d.ts
import { writeFile } from "node:fs/promises";
import { pathToFileURL } from "node:url";
import openapiTS, { astToString } from "openapi-typescript";
import ts from "typescript";

const [source = "../../openapi/openapi.json", target = "schema.d.ts"] = process.argv.slice(2);
const BYTES = ts.factory.createUnionTypeNode([
  ts.factory.createTypeReferenceNode("Uint8Array"),
  ts.factory.createTypeReferenceNode("Blob"),
]);
const ast = await openapiTS(pathToFileURL(source), {
  transform(schema) {
    if (schema.format === "binary") return BYTES;
  },
});
await writeFile(target, astToString(ast));
