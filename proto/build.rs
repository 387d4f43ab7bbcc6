//! Generates the prost messages and tonic client/server code of `admission.v1`, and a file
//! descriptor set for gRPC reflection. Uses the vendored `protoc`; no system protoc needed.

use std::path::PathBuf;

const PROTOS: [&str; 3] = [
    "proto/admission/v1/admission.proto",
    "proto/admission/v1/cluster.proto",
    "proto/admission/v1/raft.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // prost-build (under tonic-prost-build) runs the `protoc` named by `PROTOC`. The build script
    // is single-threaded, so setting the variable here is sound.
    std::env::set_var("PROTOC", protoc);

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    println!("cargo:rerun-if-changed=build.rs");

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .file_descriptor_set_path(out_dir.join("admission_v1_descriptor.bin"))
        .compile_protos(&PROTOS, &["proto"])?;
    Ok(())
}
