fn main() -> std::process::ExitCode {
    webhook_host::cli::main()
}
