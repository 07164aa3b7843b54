//! Commands from the web page (see `store::commands`): stop a trial, enqueue a configuration,
//! pause or resume. The server stores them; the coordinator applies them here, since it is the
//! one place trial state changes.

use super::{Coordinator, CoordinatorError, StopCause};
use crate::store::{Request, Write};
use crate::trial::{NewTrial, Update};

impl Coordinator<'_> {
    /// Applies the web page's pending commands. Each is marked done, with what happened, in
    /// this turn's commit together with its effects.
    pub(super) async fn apply_commands(&mut self) -> Result<(), CoordinatorError> {
        for command in self.store.pending_commands(self.study.id).await? {
            let result = match command.request {
                Ok(request) => self.apply_command(request),
                Err(why) => format!("refused: {why}"),
            };
            self.writes.push(Write::CommandDone { id: command.id, result });
        }
        Ok(())
    }

    fn apply_command(&mut self, request: Request) -> String {
        match request {
            Request::Stop { trial } => match self.active.get_mut(&trial) {
                Some(active) if active.stop.is_none() => {
                    active.stop = Some(StopCause::User);
                    active.cancel.cancel();
                    self.progress.println(format!("trial {trial}: stopped from the web page"));
                    format!("stopping trial {trial}")
                }
                Some(_) => format!("trial {trial} is already stopping"),
                None => format!("trial {trial} is not running"),
            },
            // Checked by the server already; the study's own space is the last word.
            Request::Enqueue { params } => match self.config.space.complete(&params) {
                Err(why) => format!("refused: {why}"),
                Ok(params) => {
                    // Past a proposal in flight too, whose number is taken.
                    let number = self.next_number();
                    self.record(Update::Insert(NewTrial::waiting(number, params)));
                    self.progress.println(format!("trial {number}: enqueued from the web page"));
                    format!("queued as trial {number}")
                }
            },
            Request::Pause | Request::Resume => {
                let pause = request == Request::Pause;
                if self.paused != pause {
                    self.paused = pause;
                    self.writes.push(Write::Paused(pause));
                    let what = if pause { "paused: no new trials start" } else { "resumed" };
                    self.progress.println(format!("{what} (from the web page)"));
                }
                if pause { "paused: running trials go on, no new ones start" } else { "resumed" }.into()
            }
        }
    }
}
