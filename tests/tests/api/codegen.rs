//! schema.graphql as client developers consume it: a real codegen
//! (`@graphql-codegen/cli` with the typescript plugins, pinned in
//! tests/codegen/package-lock.json) accepts it, and the README's example
//! operations validate against it and type-check under `tsc --strict`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn codegen_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("codegen")
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Installs the pinned packages (package-lock.json) on first use.
fn ensure_node_modules() {
    static INSTALLED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    INSTALLED.get_or_init(|| {
        if codegen_dir().join("node_modules/.bin/graphql-codegen").exists() {
            return;
        }
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--errors-only"])
            .current_dir(codegen_dir())
            .status()
            .expect("npm is needed for this test (apt-get install nodejs npm)");
        assert!(status.success(), "npm ci failed in {}", codegen_dir().display());
    });
}

/// The bodies of the README's ```graphql blocks, in order, as written:
/// nothing is named or split here, so a block GraphiQL or codegen would
/// refuse (two anonymous operations) fails the test.
fn readme_graphql_blocks() -> Vec<String> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```graphql") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(current.is_none(), "README.md has an unterminated ```graphql block");
    blocks
}

/// A scratch directory of its own under the system temp dir, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("api-codegen-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("documents")).expect("scratch dir");
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs graphql-codegen over `documents` (one .graphql file each) against
/// schema.graphql, writing `types.ts` into the scratch dir. `strictScalars`
/// makes an unmapped custom scalar an error, so a new scalar must be given a
/// client type here on purpose. Returns whether it succeeded, and its output.
fn run_codegen(scratch: &Scratch, documents: &[String]) -> (bool, String) {
    for (i, document) in documents.iter().enumerate() {
        std::fs::write(scratch.0.join(format!("documents/readme_{i:02}.graphql")), document).expect("write document");
    }
    let schema = repo_root().join("schema.graphql");
    let config = serde_json::json!({
        "overwrite": true,
        "schema": schema.to_str().expect("utf-8 path"),
        "documents": format!("{}/documents/*.graphql", scratch.0.display()),
        "generates": {
            scratch.0.join("types.ts").to_str().expect("utf-8 path"): {
                "plugins": ["typescript", "typescript-operations"],
                "config": {
                    "strictScalars": true,
                    "scalars": {
                        "BigInt": "string",
                        "Date": "string",
                        "DateTime": "string",
                        "JSON": "unknown"
                    }
                }
            }
        }
    });
    let config_path = scratch.0.join("codegen.json");
    std::fs::write(&config_path, config.to_string()).expect("write codegen.json");
    let output = Command::new(codegen_dir().join("node_modules/.bin/graphql-codegen"))
        .args(["--config", config_path.to_str().expect("utf-8 path"), "--errors-only"])
        .current_dir(codegen_dir())
        .output()
        .expect("graphql-codegen runs");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// A client of the generated types: the 64-bit and date scalars as the
/// strings they are on the wire, nullable lookups, and a README operation's
/// variables (only `Refresh` is referenced by name, so renaming the other
/// README operations does not break this file), and an update input that
/// clears a field with null.
const CLIENT_TS: &str = r#"import type { AirdropProject, Query, RefreshMutationVariables, Scalars, UpdatePlaceInput } from "./types";

const variables: RefreshMutationVariables = { refreshToken: "r" };
const allocation: Scalars["BigInt"]["output"] = "1000000000000000";
const day: Scalars["Date"]["input"] = "2026-01-31";
// An update input: omitted fields stay, null clears a nullable column.
const clear: UpdatePlaceInput = { id: "p1", category: null, clientMutationId: "c1" };

export function describe(lookup: Query["airdropProject"], project: AirdropProject): string {
  // A lookup by id is nullable: strict mode makes the client handle null.
  const name = lookup?.name ?? "missing";
  const left: string = project.stats.tokensLeft;
  const start: string = project.startDate;
  return [name, left, start, allocation, day, variables.refreshToken, clear.id].join(" ");
}
"#;

#[test]
fn graphql_codegen_accepts_the_schema_and_the_readme_operations_type_check_under_strict_typescript() {
    ensure_node_modules();
    let scratch = Scratch::new("readme");
    let blocks = readme_graphql_blocks();
    assert!(blocks.len() >= 4, "README.md's ```graphql blocks were not found: {blocks:?}");
    let (ok, output) = run_codegen(&scratch, &blocks);
    assert!(ok, "graphql-codegen refused schema.graphql or a README operation:\n{output}");

    std::fs::write(scratch.0.join("client.ts"), CLIENT_TS).expect("write client.ts");
    let tsc = Command::new(codegen_dir().join("node_modules/.bin/tsc"))
        .args(["--noEmit", "--strict", "--target", "es2020", "--module", "esnext", "--moduleResolution", "bundler"])
        .arg(scratch.0.join("types.ts"))
        .arg(scratch.0.join("client.ts"))
        .current_dir(codegen_dir())
        .output()
        .expect("tsc runs");
    assert!(
        tsc.status.success(),
        "the generated types do not type-check:\n{}{}",
        String::from_utf8_lossy(&tsc.stdout),
        String::from_utf8_lossy(&tsc.stderr)
    );
}

#[test]
fn graphql_codegen_refuses_an_operation_that_selects_a_field_the_schema_lacks() {
    ensure_node_modules();
    let scratch = Scratch::new("unknown-field");
    let (ok, output) =
        run_codegen(&scratch, &["query Missing { places(first: 1) { nodes { noSuchField } } }".to_owned()]);
    assert!(!ok, "codegen accepted an unknown field: {output}");
    assert!(output.contains("noSuchField"), "the failure names the field: {output}");
}
