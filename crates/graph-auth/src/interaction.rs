//! [`Interaction`]: how a login talks to the user, decided by the caller (usually the CLI).
//!
//! The library never prints. Interactive flows hand the authorization URL (and whether the system
//! browser could be opened) or the device code prompt to this trait; the CLI prints them the way
//! it wants. [`StderrInteraction`] is a ready-made choice for simple programs.

use std::time::Duration;

use url::Url;

/// What the user must do to finish a device code login.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeviceCodePrompt {
    /// The code to type on the verification page.
    pub user_code: String,
    /// The page to open on any device, e.g. `https://microsoft.com/devicelogin`.
    pub verification_uri: String,
    /// The platform's ready-made instruction text (localised), to show as is.
    pub message: String,
    /// How long the code stays valid.
    pub expires_in: Duration,
}

/// Callbacks through which a login reaches the user.
pub trait Interaction: Send + Sync {
    /// The user must open `url` to sign in. `browser_opened` says whether the system browser
    /// was launched with it; when false, print the URL prominently.
    fn authorization_url(&self, url: &Url, browser_opened: bool);

    /// Shows the device code instructions. Called once, before polling starts.
    fn device_code(&self, prompt: &DeviceCodePrompt);

    /// Opens the system browser at `url`; returns whether that worked. The default uses the
    /// `webbrowser` crate (which refuses to open a text-mode browser that would grab the terminal).
    fn open_browser(&self, url: &Url) -> bool {
        match webbrowser::open(url.as_str()) {
            Ok(()) => true,
            Err(error) => {
                tracing::debug!(%error, "cannot open the system browser");
                false
            }
        }
    }
}

/// Prints instructions to standard error.
#[derive(Debug, Clone, Copy, Default)]
pub struct StderrInteraction;

impl Interaction for StderrInteraction {
    fn authorization_url(&self, url: &Url, browser_opened: bool) {
        if browser_opened {
            eprintln!(
                "A browser window was opened to sign in. If it did not appear, open:\n\n  {url}\n"
            );
        } else {
            eprintln!("Open this URL in a browser on this machine to sign in:\n\n  {url}\n");
        }
    }

    fn device_code(&self, prompt: &DeviceCodePrompt) {
        if prompt.message.is_empty() {
            eprintln!(
                "To sign in, open {} and enter the code {}",
                prompt.verification_uri, prompt.user_code
            );
        } else {
            eprintln!("{}", prompt.message);
        }
    }
}
