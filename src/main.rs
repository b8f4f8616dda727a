//! The `p2pguard` binary: a thin front end over the library. It parses
//! arguments, runs the command, and maps the outcome to an exit status
//! (0 ok, 1 runtime failure, 2 usage or configuration error).

#![forbid(unsafe_code)]

mod cli;

use std::process::ExitCode;

use clap::Parser;

use cli::args::{Cli, Command, PolicyCommand, RulesCommand};
use cli::run::{self, Failure};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Analyze(args) => run::analyze_command(args),
        Command::Live(args) => run::live_command(args),
        Command::Inline(args) => run::inline_command(args),
        Command::Nfqueue(args) => run::nfqueue_command(args),
        Command::Rules(RulesCommand::Check { paths }) => run::rules_check(paths),
        Command::Rules(RulesCommand::List { paths }) => run::rules_list(paths),
        Command::Policy(PolicyCommand::Check { file }) => run::policy_check(file),
    };
    match result {
        Ok(true) | Err(Failure::BrokenPipe) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(Failure::Runtime(message)) => {
            eprintln!("p2pguard: {message}");
            ExitCode::from(1)
        }
        Err(Failure::Config(message)) => {
            eprintln!("p2pguard: {message}");
            ExitCode::from(2)
        }
    }
}
