//! The commands' error is the library's (`crate::error`): the respond
//! pipeline and the workspace return it, and the command line prints it.

pub use crate::error::{Error as CommandError, Exit};

pub type CmdResult = Result<Exit, CommandError>;
