//! `#[vedart::main]` and `#[vedart::test]`: run an `async fn` on a VedaRT
//! runtime built for it. Use them through the `vedart` crate, which
//! re-exports both; the documentation with examples is there.
//!
//! Arguments (all optional, comma-separated):
//!
//! - `flavor = "multi_thread"` (the default for `main`) or
//!   `"current_thread"` (the default for `test`);
//! - `worker_threads = N` (multi-thread only; N >= 1);
//! - `seed = N`: a deterministic runtime (`Builder::new_deterministic(N)`):
//!   one thread, the seeded scheduler, virtual time; excludes the other two;
//! - `crate = "path"`: where the `vedart` crate is, when renamed.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{quote, quote_spanned};
use syn::parse::Parser;
use syn::spanned::Spanned;
use syn::{Error, ItemFn, LitInt, LitStr, Path};

/// Runs `async fn main` on a VedaRT runtime (see the `vedart` crate's docs).
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(args.into(), item.into(), Kind::Main).into()
}

/// Runs an `async fn` test on a fresh VedaRT runtime (see the `vedart`
/// crate's docs).
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(args.into(), item.into(), Kind::Test).into()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Main,
    Test,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Main => "vedart::main",
            Kind::Test => "vedart::test",
        }
    }
}

enum Flavor {
    MultiThread,
    CurrentThread,
}

/// The parsed arguments.
struct Config {
    flavor: Option<(Flavor, Span)>,
    worker_threads: Option<(LitInt, Span)>,
    seed: Option<(LitInt, Span)>,
    krate: Option<Path>,
}

fn parse_config(args: TokenStream2, kind: Kind) -> syn::Result<Config> {
    let mut config = Config {
        flavor: None,
        worker_threads: None,
        seed: None,
        krate: None,
    };
    let parser = syn::meta::parser(|meta| {
        let span = meta.path.span();
        if meta.path.is_ident("flavor") {
            let value: LitStr = meta.value()?.parse()?;
            let flavor = match value.value().as_str() {
                "multi_thread" => Flavor::MultiThread,
                "current_thread" => Flavor::CurrentThread,
                other => {
                    return Err(Error::new(
                        value.span(),
                        format!(
                            "{}: unknown flavor {other:?}: expected \"multi_thread\" or \
                             \"current_thread\" (for a deterministic runtime, use `seed = N`)",
                            kind.name()
                        ),
                    ));
                }
            };
            config.flavor = Some((flavor, span));
        } else if meta.path.is_ident("worker_threads") {
            let value: LitInt = meta.value()?.parse()?;
            if value.base10_parse::<usize>()? == 0 {
                return Err(Error::new(
                    value.span(),
                    format!("{}: worker_threads must be at least 1", kind.name()),
                ));
            }
            config.worker_threads = Some((value, span));
        } else if meta.path.is_ident("seed") {
            let value: LitInt = meta.value()?.parse()?;
            value.base10_parse::<u64>()?;
            config.seed = Some((value, span));
        } else if meta.path.is_ident("crate") {
            let value: LitStr = meta.value()?.parse()?;
            config.krate = Some(value.parse()?);
        } else {
            return Err(meta.error(format!(
                "{}: unknown argument: expected `flavor`, `worker_threads`, `seed` or `crate`",
                kind.name()
            )));
        }
        Ok(())
    });
    parser.parse2(args)?;

    if let Some((_, seed_span)) = &config.seed {
        if config.flavor.is_some() || config.worker_threads.is_some() {
            return Err(Error::new(
                *seed_span,
                format!(
                    "{}: `seed` runs the deterministic runtime (one thread, virtual time); \
                     it cannot be combined with `flavor` or `worker_threads`",
                    kind.name()
                ),
            ));
        }
    }
    if let (Some((Flavor::CurrentThread, _)), Some((_, span))) =
        (&config.flavor, &config.worker_threads)
    {
        return Err(Error::new(
            *span,
            format!(
                "{}: `worker_threads` needs `flavor = \"multi_thread\"`; a current-thread \
                 runtime runs on the calling thread",
                kind.name()
            ),
        ));
    }
    Ok(config)
}

fn expand(args: TokenStream2, item: TokenStream2, kind: Kind) -> TokenStream2 {
    let mut function: ItemFn = match syn::parse2(item.clone()) {
        Ok(function) => function,
        // Hand the item back with the error, so the rest of the file still
        // resolves and the user sees one message.
        Err(error) => return with_error(item, error),
    };
    if function.sig.asyncness.is_none() {
        let error = Error::new(
            function.sig.fn_token.span(),
            format!("{}: the function must be `async fn`", kind.name()),
        );
        return with_error(item, error);
    }
    if !function.sig.inputs.is_empty() {
        let error = Error::new(
            function.sig.inputs.span(),
            format!("{}: the function takes no arguments", kind.name()),
        );
        return with_error(item, error);
    }
    let config = match parse_config(args, kind) {
        Ok(config) => config,
        Err(error) => return with_error(item, error),
    };

    let krate = config
        .krate
        .map(|path| quote!(#path))
        .unwrap_or_else(|| quote!(::vedart));
    let builder = if let Some((seed, _)) = &config.seed {
        quote!(#krate::Builder::new_deterministic(#seed))
    } else {
        let multi_thread = match &config.flavor {
            Some((Flavor::MultiThread, _)) => true,
            Some((Flavor::CurrentThread, _)) => false,
            None => kind == Kind::Main || config.worker_threads.is_some(),
        };
        if multi_thread {
            let workers = config
                .worker_threads
                .as_ref()
                .map(|(count, _)| quote!(.worker_threads(#count)));
            quote!(#krate::Builder::new_multi_thread() #workers)
        } else {
            quote!(#krate::Builder::new_current_thread())
        }
    };
    // A failing seeded test says which seed to replay.
    let seed_note = config.seed.as_ref().map(|(seed, _)| {
        let name = function.sig.ident.to_string();
        quote! {
            let _seed_note = #krate::__private::SeedNote::new(#name, #seed);
        }
    });

    function.sig.asyncness = None;
    let body = &function.block;
    let span = body.span();
    let runtime_error = format!("{}: could not build the runtime", kind.name());
    let new_body = quote_spanned! {span=>
        {
            let body = async move #body;
            #seed_note
            #[allow(clippy::expect_used)]
            {
                return #builder
                    .build()
                    .expect(#runtime_error)
                    .block_on(body);
            }
        }
    };
    function.block = match syn::parse2(new_body) {
        Ok(block) => Box::new(block),
        Err(error) => return with_error(item, error),
    };
    let test_attr = (kind == Kind::Test).then(|| quote!(#[::core::prelude::v1::test]));
    quote! {
        #test_attr
        #function
    }
}

fn with_error(item: TokenStream2, error: Error) -> TokenStream2 {
    let error = error.to_compile_error();
    quote! { #error #item }
}

#[cfg(test)]
mod tests {
    use super::{Kind, expand};
    use quote::quote;

    fn expand_test(args: proc_macro2::TokenStream, item: proc_macro2::TokenStream) -> String {
        expand(args, item, Kind::Test).to_string()
    }

    #[test]
    fn a_seeded_test_builds_the_deterministic_runtime_and_notes_the_seed() {
        let out = expand_test(
            quote!(seed = 9),
            quote!(
                async fn t() {}
            ),
        );
        assert!(out.contains("new_deterministic (9)"), "{out}");
        assert!(out.contains("SeedNote"), "{out}");
        assert!(out.contains(":: core :: prelude :: v1 :: test"), "{out}");
        assert!(!out.contains("compile_error"), "{out}");
    }

    #[test]
    fn flavors_and_worker_threads_pick_the_builder() {
        let out = expand_test(
            quote!(),
            quote!(
                async fn t() {}
            ),
        );
        assert!(out.contains("new_current_thread"), "{out}");
        let out = expand(
            quote!(),
            quote!(
                async fn main() {}
            ),
            Kind::Main,
        )
        .to_string();
        assert!(out.contains("new_multi_thread"), "{out}");
        let out = expand_test(
            quote!(worker_threads = 3),
            quote!(
                async fn t() {}
            ),
        );
        assert!(
            out.contains("new_multi_thread () . worker_threads (3)"),
            "{out}"
        );
        let out = expand_test(
            quote!(crate = "my::vedart"),
            quote!(
                async fn t() {}
            ),
        );
        assert!(out.contains("my :: vedart :: Builder"), "{out}");
    }

    #[test]
    fn bad_arguments_are_compile_errors_that_name_them() {
        for (args, message) in [
            (
                quote!(flavor = "threaded"),
                "unknown flavor \\\"threaded\\\"",
            ),
            (
                quote!(worker_threads = 0),
                "worker_threads must be at least 1",
            ),
            (
                quote!(seed = 1, flavor = "multi_thread"),
                "cannot be combined",
            ),
            (
                quote!(flavor = "current_thread", worker_threads = 2),
                "needs `flavor = \\\"multi_thread\\\"`",
            ),
            (quote!(threads = 2), "unknown argument"),
            (quote!(seed = -1), "invalid digit"),
        ] {
            let out = expand_test(
                args.clone(),
                quote!(
                    async fn t() {}
                ),
            );
            assert!(out.contains("compile_error"), "{args}: {out}");
            assert!(
                out.contains(message),
                "{args}: expected {message:?} in {out}"
            );
        }
        let out = expand_test(
            quote!(),
            quote!(
                fn t() {}
            ),
        );
        assert!(out.contains("must be `async fn`"), "{out}");
        let out = expand_test(
            quote!(),
            quote!(
                async fn t(x: u8) {}
            ),
        );
        assert!(out.contains("takes no arguments"), "{out}");
    }
}
