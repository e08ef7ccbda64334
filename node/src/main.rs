//! The `groundtruth` binary: parses the command line and hands over to `groundtruth_node::cli`.

fn main() -> std::process::ExitCode {
    groundtruth_node::cli::main()
}
