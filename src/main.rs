//! The `kioskpay` binary: all logic lives in the library; see `kioskpay --help`.

fn main() -> std::process::ExitCode {
    kioskpay::cli::main()
}
