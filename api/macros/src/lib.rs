//! `#[paged]`: Relay's four paging arguments, written once for every
//! connection field of the `api` crate.
//!
//! async-graphql 7 has no way to share arguments between resolvers: an
//! argument struct marked `#[graphql(flatten)]` is parsed but ignored, and a
//! `macro_rules!` call cannot stand where `#[Object]` expects a parameter.
//! So every connection repeated `first`, `after`, `last` and `before` with
//! their descriptions, then the same line turning them into a page. This
//! attribute goes ABOVE `#[Object]` / `#[ComplexObject]` (outer attributes
//! expand first, so async-graphql sees the four arguments as if written by
//! hand) and rewrites every method that has a parameter marked `#[page]`:
//!
//! ```ignore
//! #[paged]
//! #[Object]
//! impl PostsQuery {
//!     /// The signed-in user's posts, newest first.
//!     async fn my_posts(&self, ctx: &Context<'_>, #[page] page: Page) -> ApiResult<PostConnection> {
//!         // `page` is already checked here.
//!     }
//! }
//! ```
//!
//! becomes, for async-graphql, `my_posts(first, after, last, before)` with
//! their descriptions, at the place of the marked parameter (so the
//! schema's argument order is the one written), and a body that starts
//! with `let page: Page = FromPageArgs::from_page_args(PageArgs { .. }, ctx)?;`:
//! bad arguments are BAD_USER_INPUT naming the argument before anything
//! else runs, and the page learns from the context which cursors its
//! selection reads (so the method must take `ctx: &Context<'_>`, under any
//! name). The parameter's type is anything implementing
//! `api::graphql::pagination::FromPageArgs`: `Page` for a list read at once,
//! `PageArgs` for a DataLoader key (a nested list read for many parents).
//!
//! A rewritten method without a `complexity` of its own costs
//! `cost::page(first, last, child_complexity)`, what a connection costs;
//! one with more arguments (filters) may name its own and use `first` and
//! `last` in it. Rewritten methods allow `clippy::too_many_arguments`: the
//! four are GraphQL arguments, not a Rust API to shrink.
//!
//! The generated code names `crate::graphql::...`: this attribute is for the
//! `api` crate alone.

mod input;

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2, TokenTree};
use quote::quote;
use syn::{Attribute, FnArg, ImplItem, ImplItemFn, ItemImpl, Pat, PatType, parse_macro_input, parse_quote};

mod from_model;

/// The four arguments as the schema shows them: names and descriptions.
const ARGUMENTS: [(&str, &str); 4] = [
    ("first", "Page size going forward, at most 100 (default 20)."),
    ("after", "Continue after this cursor (from an edge or `endCursor`)."),
    ("last", "Page size going backward: the items just before `before`, or the list's last."),
    ("before", "Page back from this cursor (from an edge or `startCursor`)."),
];

/// A mutation's input object: derives `InputObject`, adds
/// `clientMutationId`, and with `update = UpdateX` declares the update twin
/// and the enum of field values; see the `input` module.
#[proc_macro_attribute]
pub fn mutation_input(attr: TokenStream, item: TokenStream) -> TokenStream {
    input::expand(attr.into(), item.into()).unwrap_or_else(syn::Error::into_compile_error).into()
}

/// Gives each method of the impl with a `#[page]` parameter Relay's four
/// paging arguments in its place; see the crate docs.
#[proc_macro_attribute]
pub fn paged(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        let message = "#[paged] takes no arguments; mark the parameter with #[page]";
        return syn::Error::new(Span::call_site(), message).to_compile_error().into();
    }
    let mut item = parse_macro_input!(item as ItemImpl);
    let mut errors = TokenStream2::new();
    for member in &mut item.items {
        if let ImplItem::Fn(method) = member
            && let Err(e) = rewrite(method)
        {
            errors.extend(e.to_compile_error());
        }
    }
    quote!(#item #errors).into()
}

/// Replaces the `#[page]` parameter of `method`, if it has one.
fn rewrite(method: &mut ImplItemFn) -> syn::Result<()> {
    let marked: Vec<usize> = method
        .sig
        .inputs
        .iter()
        .enumerate()
        .filter(|(_, input)| matches!(input, FnArg::Typed(p) if p.attrs.iter().any(is_page)))
        .map(|(i, _)| i)
        .collect();
    let Some(&at) = marked.first() else { return Ok(()) };
    if marked.len() > 1 {
        return Err(syn::Error::new_spanned(&method.sig, "only one parameter can be #[page]"));
    }
    for input in &method.sig.inputs {
        if let FnArg::Typed(PatType { pat, .. }) = input
            && let Pat::Ident(name) = &**pat
            && ARGUMENTS.iter().any(|(argument, _)| name.ident == argument)
        {
            return Err(syn::Error::new_spanned(name, "a #[page] resolver has this argument already"));
        }
    }

    let inputs = std::mem::take(&mut method.sig.inputs);
    let mut page = None;
    for (i, input) in inputs.into_iter().enumerate() {
        if i != at {
            method.sig.inputs.push(input);
            continue;
        }
        let FnArg::Typed(mut param) = input else { unreachable!("marked parameters are typed") };
        param.attrs.retain(|a| !is_page(a));
        if !param.attrs.is_empty() {
            return Err(syn::Error::new_spanned(&param.attrs[0], "a #[page] parameter takes no other attribute"));
        }
        method.sig.inputs.extend(relay_arguments());
        page = Some(param);
    }
    let Some(PatType { pat, ty, .. }) = page else { unreachable!("the marked index is in range") };
    let Some(ctx) = context_parameter(method) else {
        let message = "a #[page] resolver takes the context (`ctx: &Context<'_>`): the page reads the cursors its selection asks for";
        return Err(syn::Error::new_spanned(&method.sig, message));
    };

    let build: syn::Stmt = parse_quote! {
        let #pat: #ty = crate::graphql::pagination::FromPageArgs::from_page_args(
            crate::graphql::pagination::PageArgs { first, after, last, before },
            #ctx,
        )?;
    };
    method.block.stmts.insert(0, build);
    if !method.attrs.iter().any(names_complexity) {
        method.attrs.push(parse_quote! {
            #[graphql(complexity = "crate::graphql::cost::page(first, last, child_complexity)")]
        });
    }
    method.attrs.push(parse_quote!(#[allow(clippy::too_many_arguments)]));
    Ok(())
}

/// `From<Model>` for a GraphQL object, each field from its column; see
/// the `from_model` module.
#[proc_macro_derive(FromModel, attributes(from_model))]
pub fn from_model(item: TokenStream) -> TokenStream {
    let input = parse_macro_input!(item as syn::DeriveInput);
    from_model::derive(&input).unwrap_or_else(syn::Error::into_compile_error).into()
}

/// `first`, `after`, `last`, `before`, typed and described.
fn relay_arguments() -> impl Iterator<Item = FnArg> {
    ARGUMENTS.into_iter().map(|(name, desc)| {
        let ident = syn::Ident::new(name, Span::call_site());
        let ty: syn::Type =
            if matches!(name, "first" | "last") { parse_quote!(Option<i32>) } else { parse_quote!(Option<String>) };
        parse_quote!(#[graphql(desc = #desc)] #ident: #ty)
    })
}

/// The name of `method`'s context parameter: a reference to a type named
/// `Context`, as async-graphql recognises it.
fn context_parameter(method: &ImplItemFn) -> Option<syn::Ident> {
    method.sig.inputs.iter().find_map(|input| {
        let FnArg::Typed(PatType { pat, ty, .. }) = input else { return None };
        let syn::Type::Reference(reference) = &**ty else { return None };
        let syn::Type::Path(path) = &*reference.elem else { return None };
        let Pat::Ident(name) = &**pat else { return None };
        (path.path.segments.last()?.ident == "Context").then(|| name.ident.clone())
    })
}

fn is_page(attr: &Attribute) -> bool {
    attr.path().is_ident("page")
}

/// A `#[graphql(..)]` attribute that sets `complexity` (a top-level
/// `complexity` word in its list: async-graphql's own grammar is not
/// needed to see that).
fn names_complexity(attr: &Attribute) -> bool {
    let syn::Meta::List(list) = &attr.meta else { return false };
    list.path.is_ident("graphql")
        && list.tokens.clone().into_iter().any(|t| matches!(t, TokenTree::Ident(i) if i == "complexity"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(method: ImplItemFn) -> syn::Result<ImplItemFn> {
        let mut method = method;
        rewrite(&mut method)?;
        Ok(method)
    }

    fn argument_names(method: &ImplItemFn) -> Vec<String> {
        method
            .sig
            .inputs
            .iter()
            .map(|input| match input {
                FnArg::Receiver(_) => "self".to_owned(),
                FnArg::Typed(p) => quote!(#p).to_string(),
            })
            .collect()
    }

    #[test]
    fn the_four_arguments_stand_where_the_page_parameter_stood_with_their_descriptions() {
        let method = rewritten(parse_quote! {
            async fn runs(&self, ctx: &Context<'_>, routine_id: ID, #[page] page: Page, status: Option<RunStatus>) -> ApiResult<C> {
                list(page)
            }
        })
        .expect("rewrites");
        let names = argument_names(&method);
        assert_eq!(names.len(), 8, "{names:?}");
        assert!(names[2].starts_with("routine_id"), "{names:?}");
        for (i, (name, desc)) in ARGUMENTS.iter().enumerate() {
            let written = &names[3 + i];
            assert!(written.contains(&format!("{name} :")), "{written}");
            assert!(written.contains(&format!("{desc:?}")), "{written}");
        }
        assert!(names[7].starts_with("status"), "{names:?}");
        let body = method.block.stmts.first().expect("a statement");
        let body = quote!(#body).to_string();
        assert!(body.starts_with("let page : Page = crate :: graphql :: pagination :: FromPageArgs"), "{body}");
        assert!(body.contains("PageArgs { first , after , last , before } , ctx ,"), "{body}");
    }

    #[test]
    fn a_connection_costs_a_page_unless_it_names_its_own_complexity() {
        let plain = rewritten(parse_quote! { async fn a(&self, c: &Context<'_>, #[page] page: Page) -> R { x } })
            .expect("rewrites");
        let attrs: Vec<String> = plain.attrs.iter().map(|a| quote!(#a).to_string()).collect();
        assert!(attrs.iter().any(|a| a.contains("cost::page(first, last, child_complexity)")), "{attrs:?}");

        let own = rewritten(parse_quote! {
            #[graphql(complexity = "searched(first, last, child_complexity)")]
            async fn a(&self, c: &Context<'_>, #[page] page: Page) -> R { x }
        })
        .expect("rewrites");
        let attrs: Vec<String> = own.attrs.iter().map(|a| quote!(#a).to_string()).collect();
        assert_eq!(attrs.iter().filter(|a| a.contains("complexity")).count(), 1, "{attrs:?}");
    }

    #[test]
    fn a_method_without_a_page_parameter_is_left_as_it_is() {
        let before: ImplItemFn = parse_quote! { async fn a(&self, id: ID) -> R { x } };
        let after = rewritten(before.clone()).expect("leaves it");
        assert_eq!(quote!(#before).to_string(), quote!(#after).to_string());
    }

    #[test]
    fn two_page_parameters_or_a_paging_argument_of_its_own_are_refused() {
        let error = |method| rewritten(method).err().map(|e| e.to_string()).unwrap_or_default();
        let two =
            error(parse_quote! { async fn a(&self, c: &Context<'_>, #[page] a: Page, #[page] b: Page) -> R { x } });
        assert!(two.contains("only one parameter"), "{two}");
        let clash = error(parse_quote! { async fn a(&self, c: &Context<'_>, first: i32, #[page] a: Page) -> R { x } });
        assert!(clash.contains("has this argument already"), "{clash}");
        let described = error(
            parse_quote! { async fn a(&self, c: &Context<'_>, #[page] #[graphql(desc = "x")] a: Page) -> R { x } },
        );
        assert!(described.contains("no other attribute"), "{described}");
    }

    #[test]
    fn a_page_parameter_needs_the_context_beside_it() {
        let without = rewritten(parse_quote! { async fn a(&self, #[page] a: Page) -> R { x } });
        let message = without.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("takes the context"), "{message}");
        let named = rewritten(
            parse_quote! { async fn a(&self, #[page] a: Page, the_ctx: &async_graphql::Context<'_>) -> R { x } },
        )
        .expect("rewrites");
        let body = named.block.stmts.first().expect("a statement");
        let body = quote!(#body).to_string();
        assert!(body.contains("} , the_ctx ,"), "{body}");
    }
}
