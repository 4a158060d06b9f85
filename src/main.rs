fn main() {
    if let Err(error) = fruitlab::cli::run() {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}
