//! `gridwatch test-notify (--contact ID | --role ROLE) [--channel KIND]`:
//! sends a clearly marked test message through the real send path (the same
//! channels, signing, mentions and provider as an alarm) and prints what
//! each receiver answered. Exit 0 only when every receiver confirmed.
//!
//! It talks to the receivers directly, not through the daemon's outbox: an
//! installer runs it before the daemon is started, and a test message must
//! never sit in the alarm outbox or on the duty board.

use crate::channels::test_send;
use std::path::PathBuf;
use std::process::ExitCode;

/// `gridwatch test-notify ...`.
#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("who").required(true).args(["contact", "role"])))]
pub struct TestNotifyArgs {
    #[arg(long, default_value = "config/gateway.toml")]
    pub config: PathBuf,
    /// A contact id from the registry (`[[contacts]] id`, or a resident's `{household}.r{n}`).
    #[arg(long)]
    pub contact: Option<String>,
    /// Every contact of a role: resident, grid_worker, director, fire_brigade, family, operator.
    #[arg(long)]
    pub role: Option<String>,
    /// Only this channel (voice, sms, email, webhook, console); default: each channel of the role's list.
    #[arg(long)]
    pub channel: Option<String>,
}

/// Runs the command; prints one line per receiver.
pub fn test_notify(args: &TestNotifyArgs) -> ExitCode {
    // The same build step as run: the channels are the daemon's own.
    let (config, parts) = match crate::runtime::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gridwatch test-notify: invalid configuration:\n{e}");
            return ExitCode::from(2);
        }
    };
    let mut channels = parts.channels;
    let targets = match test_send::targets(
        &config,
        args.contact.as_deref(),
        args.role.as_deref(),
        args.channel.as_deref(),
    ) {
        Ok(t) if t.is_empty() => {
            eprintln!("gridwatch test-notify: nobody to send to (no contact with an address on those channels)");
            return ExitCode::from(2);
        }
        Ok(t) => t,
        Err(e) => {
            eprintln!("gridwatch test-notify: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gridwatch test-notify: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async {
        // Voice: the modem's port task runs for the calls; a cloud provider's
        // acceptance of the call is its answer here (the call's result goes
        // to the daemon's callback, not to this command).
        let (calls_tx, mut calls_rx) = tokio::sync::mpsc::channel(16);
        channels.start(crate::health::Health::new(), calls_tx);
        let mut all_ok = true;
        for t in targets {
            let answer = test_send::send(&config, &channels, &t).await;
            // A call reports how it ended before its send returns.
            while let Ok(r) = calls_rx.try_recv() {
                println!(
                    "{} ({}) {} {}: call {}",
                    answer.name,
                    answer.contact_id,
                    answer.channel.as_str(),
                    answer.to,
                    r.detail()
                );
            }
            all_ok &= answer.confirmed();
            println!("{}", answer.line());
        }
        if all_ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    })
}
