//! Reading the message from a file or standard input; the library's
//! [`SavedMessage`] checks that it is one and splits its header section.

use dmarc_verifier::envelope::SavedMessage;
use std::{
    io::Read,
    path::{Path, PathBuf},
};

/// A message read from a file or standard input.
#[derive(Debug)]
pub struct Message {
    /// How to name the input in messages: the path, or `<stdin>`.
    pub name: String,
    /// The message, its header fields and notes about it.
    pub saved: SavedMessage,
}

/// Reads `path` (`-`: standard input) and checks that it is a message.
///
/// # Errors
///
/// One line, starting with the input's name, when the input cannot be read,
/// is empty, or has no header section (binary data, text that does not start
/// with a header field, a blank first line).
pub fn read(path: &Path) -> Result<Message, String> {
    let (name, bytes) = if path == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::stdin()
            .lock()
            .read_to_end(&mut bytes)
            .map_err(|e| format!("<stdin>: cannot read: {e}"))?;
        ("<stdin>".to_string(), bytes)
    } else {
        let bytes =
            std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        (PathBuf::from(path).display().to_string(), bytes)
    };
    match SavedMessage::parse(bytes) {
        Ok(saved) => Ok(Message { name, saved }),
        Err(error) => Err(format!("{name}: {error}")),
    }
}
