//! Compiles qnetd/status.proto and qnetd/state.proto with protox (pure Rust, no protoc) and
//! generates the Rust types with prost, deriving serde for the JSON form.

fn main() {
    println!("cargo:rerun-if-changed=qnetd/status.proto");
    println!("cargo:rerun-if-changed=qnetd/state.proto");
    let fds = match protox::compile(["qnetd/status.proto", "qnetd/state.proto"], ["."]) {
        Ok(f) => f,
        Err(e) => panic!("the .proto files do not compile: {e}"),
    };
    let mut config = prost_build::Config::new();
    config.type_attribute(".", "#[derive(serde::Serialize, serde::Deserialize)]");
    config.type_attribute(".", "#[serde(default)]");
    if let Err(e) = config.compile_fds(fds) {
        panic!("generating Rust code from the .proto files failed: {e}");
    }
}
