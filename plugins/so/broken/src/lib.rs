//! A resolver that misbehaves on purpose, chosen by the token: `panic`, `hang`, `garbage`
//! (a target that is not one), `status200` (a refusal with a success status); any other token
//! goes to the `--token-source` target. A source `panic-on-destroy:TARGET` makes an instance
//! that panics when it is dropped. Used by tests/tokens.rs and tests/liveness.rs; never
//! shipped.

use websockify_plugin_api::{Kind, Outcome, Plugin, Request};

pub struct Broken {
    target: String,
    panic_on_destroy: bool,
}

impl Drop for Broken {
    fn drop(&mut self) {
        if self.panic_on_destroy {
            panic!("the broken plugin panics while it is dropped");
        }
    }
}

impl Plugin for Broken {
    const NAME: &'static str = "Broken";
    const KIND: Kind = Kind::Resolver;

    fn create(config: &str) -> Result<Self, String> {
        let (target, panic_on_destroy) = match config.strip_prefix("panic-on-destroy:") {
            Some(target) => (target, true),
            None => (config, false),
        };
        Ok(Broken {
            target: target.to_string(),
            panic_on_destroy,
        })
    }

    fn call(&self, request: &Request<'_>) -> Outcome {
        match request.token {
            "panic" => panic!("the broken plugin panics"),
            "hang" => {
                std::thread::sleep(std::time::Duration::from_secs(8));
                Outcome::Target(self.target.clone())
            }
            "garbage" => Outcome::Target("this is not host:port".to_string()),
            "status200" => Outcome::Refuse {
                status: 200,
                reason: "fine".to_string(),
            },
            _ => Outcome::Target(self.target.clone()),
        }
    }
}

websockify_plugin_api::export_plugin!(Broken);
