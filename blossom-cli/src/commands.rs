//! The client commands: `text`, `chat`, `image`, `models`.

use std::io::{IsTerminal, Write};
use std::path::Path;

use blossom_client::{BlossomClient, ChatOptions, Error, ImageOptions, Message, ModelKind};
use futures_util::StreamExt;
use tokio::io::AsyncBufReadExt;

use crate::cli::{ChatArgs, ChatFlags, ImageArgs, ModelsArgs, TextArgs};
use crate::failure::{Failure, io_failure};
use crate::progress::with_progress;

/// `blossom text PROMPT`: one user message, the answer streamed to stdout as it arrives.
pub(crate) async fn text(client: &BlossomClient, args: &TextArgs) -> Result<(), Failure> {
    let prompt = non_blank(&args.prompt)?;
    let mut messages: Vec<Message> = args.chat.system.iter().map(Message::system).collect();
    messages.push(Message::user(prompt));
    stream_answer(client, &messages, &chat_options(&args.chat)).await.map(drop)
}

/// `blossom chat`: each stdin line is a user message; the history grows with every answer.
///
/// Read from a pipe, the first failure ends the chat with its exit code. At a terminal it is
/// reported, the unanswered message is dropped from the history, and the chat goes on.
pub(crate) async fn chat(client: &BlossomClient, args: &ChatArgs) -> Result<(), Failure> {
    let interactive = std::io::stdin().is_terminal();
    let options = chat_options(&args.chat);
    let mut history: Vec<Message> = args.chat.system.iter().map(Message::system).collect();
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        if interactive {
            let _ = write!(std::io::stderr(), "> ");
            let _ = std::io::stderr().flush();
        }
        let Some(line) = lines.next_line().await.map_err(|e| io_failure("cannot read stdin", e))? else {
            break;
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        history.push(Message::user(line));
        match stream_answer(client, &history, &options).await {
            Ok(answer) => history.push(Message::assistant(answer)),
            Err(failure) if interactive => {
                history.pop();
                note!("{}", failure.line());
            }
            Err(failure) => return Err(failure),
        }
    }
    Ok(())
}

/// `blossom image PROMPT -o FILE`: generates with a progress indicator, then saves.
pub(crate) async fn image(client: &BlossomClient, args: &ImageArgs) -> Result<(), Failure> {
    let prompt = non_blank(&args.prompt)?;
    check_output_dir(&args.output)?;
    let options = ImageOptions {
        model: args.model.clone(),
        width: args.width,
        height: args.height,
        seed: args.seed,
        ..ImageOptions::default()
    };
    let image = with_progress("generating image", client.image().generate(prompt, &options)).await?;
    std::fs::write(&args.output, &image.bytes)
        .map_err(|e| io_failure(format_args!("cannot write {}", args.output.display()), e))?;
    // Not `println!`: it panics when stdout is closed or full.
    writeln!(
        std::io::stdout(),
        "saved {} ({} bytes, {})",
        args.output.display(),
        image.bytes.len(),
        image.content_type
    )
    .map_err(|e| io_failure(format_args!("cannot write to stdout"), e))?;
    Ok(())
}

/// `blossom models [--image]`: one model per line, `name<TAB>description` when described.
pub(crate) async fn models(client: &BlossomClient, args: &ModelsArgs) -> Result<(), Failure> {
    let kind = if args.image { ModelKind::Image } else { ModelKind::Text };
    let models = client.models(kind).await?;
    let mut stdout = std::io::stdout().lock();
    for model in models {
        let written = match model.description.as_deref().filter(|d| !d.trim().is_empty()) {
            Some(description) => writeln!(stdout, "{}\t{}", model.name, description.trim()),
            None => writeln!(stdout, "{}", model.name),
        };
        written.map_err(|e| io_failure("cannot write stdout", e))?;
    }
    Ok(())
}

/// Streams one answer to stdout, flushing every delta; returns the whole answer.
async fn stream_answer(client: &BlossomClient, messages: &[Message], options: &ChatOptions) -> Result<String, Failure> {
    let mut stream = client.text().chat_stream(messages, options);
    let mut answer = String::new();
    let mut stdout = std::io::stdout();
    let write = |stdout: &mut std::io::Stdout, text: &str| {
        stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
            .map_err(|e| io_failure("cannot write stdout", e))
    };
    while let Some(delta) = stream.next().await {
        match delta {
            Ok(delta) => {
                write(&mut stdout, &delta)?;
                answer.push_str(&delta);
            }
            Err(error) => {
                if !answer.is_empty() && !answer.ends_with('\n') {
                    // End the partial answer so the error line stands on its own.
                    write(&mut stdout, "\n")?;
                }
                return Err(error.into());
            }
        }
    }
    if !answer.ends_with('\n') {
        write(&mut stdout, "\n")?;
    }
    Ok(answer)
}

fn chat_options(flags: &ChatFlags) -> ChatOptions {
    let mut options = ChatOptions { seed: flags.seed, ..ChatOptions::default() };
    if let Some(model) = &flags.model {
        options.model = model.clone();
    }
    options
}

/// The prompt, refused if blank (the chat request would send it as is).
fn non_blank(prompt: &str) -> Result<&str, Failure> {
    if prompt.trim().is_empty() {
        return Err(Error::InvalidInput { what: "prompt is empty; give a prompt with some text".into() }.into());
    }
    Ok(prompt)
}

/// Refuses an output path whose directory does not exist before the (slow) request is sent.
fn check_output_dir(output: &Path) -> Result<(), Failure> {
    let dir = match output.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let problem = if output.is_dir() {
        format!("{} is a directory", output.display())
    } else if !dir.is_dir() {
        format!("{} is not an existing directory", dir.display())
    } else {
        return Ok(());
    };
    Err(Failure::usage(
        format!("cannot save the image: {problem}"),
        "give -o a file path in an existing directory; nothing was sent",
    ))
}
