//! `burn-patcher generate DIR --prompt TEXT`: text from a checkpoint of any causal-LM family
//! the kit knows, streamed token by token, with the prompt's and the decode's speed at the end.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use burn::prelude::*;
use patcher_burn::{backend_quant_scheme, LoadOptions};
use patcher_models::auto::AutoModelForCausalLm;
use patcher_models::prelude::*;
use patcher_models::replacements::Patch;
use patcher_models::tokenizer::{ChatMessage, TextStreamer, Tokenizer, TokenizerError};

use crate::error::CliError;
use crate::family::{check_patches, FamilyName};
use crate::prepare::family_of_config;

/// The backends `--backend` picks from (those this binary was built with).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum BackendName {
    /// Burn's Flex CPU backend (gemm + rayon).
    Flex,
    /// Burn's NdArray CPU backend.
    Ndarray,
    /// wgpu (Vulkan, Metal, DX12; feature `wgpu`).
    #[cfg(feature = "wgpu")]
    Wgpu,
    /// CUDA (feature `cuda`; CUDA is loaded at run time).
    #[cfg(feature = "cuda")]
    Cuda,
}

/// `--quantize` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum QuantizeName {
    /// The Linear weights in the backend's own 8-bit scheme, as they are loaded.
    Int8,
}

/// The `generate` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct GenerateArgs {
    /// The checkpoint folder: config.json, the weights, tokenizer.json (and
    /// tokenizer_config.json, generation_config.json when present).
    #[arg(value_name = "DIR")]
    pub(crate) dir: PathBuf,
    /// The prompt.
    #[arg(long)]
    prompt: String,
    /// Wrap the prompt in the checkpoint's chat template as a user message, with the
    /// assistant's header after it (transformers' apply_chat_template with
    /// add_generation_prompt=True).
    #[arg(long)]
    chat: bool,
    /// With --chat, a system message before the prompt.
    #[arg(long, requires = "chat", value_name = "TEXT")]
    system: Option<String>,
    /// Patches to apply (repeat the flag, or separate with commas): fused-qkv,
    /// sequential-experts, seed.
    #[arg(long = "patch", value_name = "NAME", value_delimiter = ',')]
    patches: Vec<Patch>,
    /// Quantize as the weights load.
    #[arg(long, value_enum, value_name = "SCHEME")]
    quantize: Option<QuantizeName>,
    /// The backend to run on.
    #[arg(long, value_enum, default_value = "flex")]
    backend: BackendName,
    /// Tokens to generate at most. Default: generation_config.json's max_new_tokens, else its
    /// max_length less the prompt, else 20 (transformers' default).
    #[arg(long, value_name = "N")]
    max_new_tokens: Option<usize>,
    /// Sample with this temperature (greedy without it, unless generation_config.json has
    /// do_sample); 0 means greedy.
    #[arg(long, value_name = "T", allow_negative_numbers = true)]
    temperature: Option<f32>,
    /// With sampling, keep the K most likely tokens.
    #[arg(long, value_name = "K")]
    top_k: Option<usize>,
    /// With sampling, keep the most likely tokens up to this total probability.
    #[arg(long, value_name = "P", allow_negative_numbers = true)]
    top_p: Option<f32>,
    /// Penalize tokens already seen (transformers' repetition_penalty; 1 is none).
    #[arg(long, value_name = "R", allow_negative_numbers = true)]
    repetition_penalty: Option<f32>,
    /// The sampler's seed: the same seed gives the same text. Default: from the clock.
    #[arg(long)]
    seed: Option<u64>,
}

impl GenerateArgs {
    /// Runs on the backend `--backend` names.
    pub(crate) fn run(self) -> Result<String, CliError> {
        match self.backend {
            BackendName::Flex => self.run_on::<burn::backend::Flex>(&Default::default()),
            BackendName::Ndarray => self.run_on::<burn::backend::NdArray>(&Default::default()),
            #[cfg(feature = "wgpu")]
            BackendName::Wgpu => self.run_on::<burn::backend::Wgpu>(&Default::default()),
            #[cfg(feature = "cuda")]
            BackendName::Cuda => self.run_on::<burn::backend::Cuda>(&Default::default()),
        }
    }

    /// The generation config: generation_config.json, then the flags over it.
    fn config(&self) -> Result<GenerationConfig, CliError> {
        let path = self.dir.join("generation_config.json");
        let mut config = GenerationConfig::for_checkpoint(&self.dir)
            .map_err(|source| CliError::config(path, source))?;
        if let Some(n) = self.max_new_tokens {
            config = config.with_max_new_tokens(n);
        }
        match self.temperature {
            Some(0.0) => config = config.with_sampling(false),
            Some(t) => config = config.with_sampling(true).with_temperature(t),
            None => {}
        }
        if let Some(k) = self.top_k {
            config = config.with_top_k(k);
        }
        if let Some(p) = self.top_p {
            config = config.with_top_p(p);
        }
        if let Some(r) = self.repetition_penalty {
            config = config.with_repetition_penalty(r);
        }
        if let Some(seed) = self.seed {
            config = config.with_seed(seed);
        }
        config
            .validate()
            .map_err(|e| CliError::Usage(e.to_string()))?;
        Ok(config)
    }

    /// The prompt's ids: the text, or the chat template's rendering of it.
    fn prompt_ids(&self, tokenizer: &Tokenizer) -> Result<Vec<i64>, CliError> {
        if !self.chat {
            return Ok(tokenizer.encode(&self.prompt, true)?);
        }
        let mut messages = Vec::new();
        if let Some(system) = &self.system {
            messages.push(ChatMessage::system(system.as_str()));
        }
        messages.push(ChatMessage::user(self.prompt.as_str()));
        let text = match tokenizer.apply_chat_template(&messages, true) {
            Err(TokenizerError::NoChatTemplate(_)) => {
                return Err(CliError::Usage(format!(
                    "{}'s tokenizer has no chat template (no chat_template.jinja, no \
                     chat_template in tokenizer_config.json): leave out --chat and give the \
                     prompt as plain text",
                    self.dir.display()
                )))
            }
            other => other?,
        };
        // The template writes the special tokens itself.
        Ok(tokenizer.encode(&text, false)?)
    }

    /// The patches combined, checked against the family config.json names (a usage error
    /// listing the family's patches), which must be a causal LM.
    fn patch(&self) -> Result<Patch, CliError> {
        let family = family_of_config(&self.dir.join("config.json"))?;
        if family == FamilyName::Bert {
            return Err(CliError::Usage(format!(
                "{} is a {} checkpoint, an encoder: generate needs a causal LM",
                self.dir.display(),
                family.model_type()
            )));
        }
        check_patches(family, &self.patches).map_err(CliError::Usage)
    }

    fn run_on<B: Backend>(self, device: &B::Device) -> Result<String, CliError> {
        let patch = self.patch()?;
        let tokenizer = Tokenizer::from_pretrained(&self.dir)?;
        let config = self.config()?;
        let ids = self.prompt_ids(&tokenizer)?;
        if ids.is_empty() {
            return Err(CliError::Usage(
                "the prompt encodes to no token: give some text".to_string(),
            ));
        }
        let mut options = LoadOptions::default();
        if let Some(QuantizeName::Int8) = self.quantize {
            options = options.quantize(backend_quant_scheme::<B>());
        }
        let loaded = AutoModelForCausalLm::<B>::new()
            .from_pretrained(&self.dir, patch, device, &options)
            .map_err(CliError::load)?;
        let prompt_len = ids.len();
        let input = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [1, prompt_len]), device);

        let mut streamer = TextStreamer::new(&tokenizer, true);
        let mut stdout = std::io::stdout().lock();
        let mut failure = None;
        let start = Instant::now();
        let mut first_token = None;
        let generated =
            loaded
                .causal_lm()
                .generate_streaming(input, None, &config, &mut |_, token| {
                    first_token.get_or_insert_with(|| start.elapsed());
                    match streamer.push(token) {
                        Ok(text) => {
                            let _ = write!(stdout, "{text}");
                            let _ = stdout.flush();
                        }
                        Err(e) => {
                            failure.get_or_insert(e);
                        }
                    }
                })?;
        let total = start.elapsed();
        if let Some(error) = failure {
            return Err(error.into());
        }
        let _ = writeln!(stdout, "{}", streamer.finish()?);
        let new = generated.tokens[0].len();
        let prefill = first_token.unwrap_or(total);
        eprintln!(
            "{}",
            speed_line(prompt_len, prefill, new.saturating_sub(1), total - prefill)
        );
        Ok(String::new())
    }
}

/// `prompt: 12 tokens in 0.031 s (387.1 tokens/s); decode: 31 tokens in 0.402 s (77.1
/// tokens/s)`. The prompt's time runs to the first new token (the prefill and its sampling);
/// the decode's counts the tokens after it.
fn speed_line(prompt: usize, prefill: Duration, decoded: usize, decode: Duration) -> String {
    let rate = |n: usize, d: Duration| {
        if d.is_zero() {
            "-".to_string()
        } else {
            format!("{:.1}", n as f64 / d.as_secs_f64())
        }
    };
    format!(
        "prompt: {prompt} tokens in {:.3} s ({} tokens/s); decode: {decoded} tokens in {:.3} s \
         ({} tokens/s)",
        prefill.as_secs_f64(),
        rate(prompt, prefill),
        decode.as_secs_f64(),
        rate(decoded, decode)
    )
}
