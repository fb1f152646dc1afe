//! The `atomserve` binary: parse the configuration and run the server. No logic lives here.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let config = atomserve::config::Config::parse(); // bad flags: clap prints why and exits 2
    if let Some(url) = &config.healthcheck {
        return match atomserve::healthcheck::probe(url) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                atomserve::log!("healthcheck {url}: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match atomserve::server::run(&config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            atomserve::log!("error: {e}");
            ExitCode::from(2)
        }
    }
}
