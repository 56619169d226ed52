//! `#[mutation_input]`: a mutation's input object, declared once.
//!
//! Every input of the `api` crate's mutations ends with the same
//! `clientMutationId`, and every entity that can be changed had its create
//! input written twice: once as it is created, once as an update with `id`
//! first and each field `MaybeUndefined` (omitted = unchanged, null =
//! cleared or refused), with descriptions copied by hand. This attribute
//! replaces `#[derive(InputObject)]` on an input struct:
//!
//! ```ignore
//! /// A new review.
//! #[mutation_input(update = UpdateReviewInput, fields = ReviewField)]
//! pub struct CreateReviewInput {
//!     /// The place to review.
//!     #[input(create_only)]
//!     pub place_id: ID,
//!     /// 0 to 5.
//!     pub rating: f64,
//!     /// Optional text, at most 5000 characters.
//!     pub comment: Option<String>,
//! }
//! ```
//!
//! - The struct derives `InputObject` and gets `client_mutation_id:
//!   Option<String>` last, described the same way for every input ([`ECHO`]).
//!   `part` leaves it out: the struct is a part of inputs (flattened into
//!   one, listed in another) rather than a mutation's argument.
//! - `update = UpdateX` declares the update twin: `id: ID` ("The <x> to
//!   change.", <x> from the twin's name), then every field not marked
//!   `#[input(create_only)]`, in order, as `MaybeUndefined<T>` (an
//!   `Option<T>` field as `MaybeUndefined<T>`), its `#[graphql(default..)]`
//!   dropped and its description the create field's with "; null removes
//!   it" (nullable: an `Option`, or a field marked `#[input(nullable)]`,
//!   whose null is the type's default) or "; cannot be null" appended, then
//!   an `#[input(on_update = "...")]` note if it has one. The twin is
//!   described as "Changes to a <x>; omitted fields stay as they are.",
//!   or by `update_doc = "..."` where it has more to say.
//! - `fields = XField` (with `update`) declares an enum with one variant
//!   per field, holding the create field's type: the one typed form of a
//!   field value, which the domain checks and writes to its row in one
//!   `match` for create and update alike. The create input gets
//!   `into_fields(self)` (every field, and the `clientMutationId` unless
//!   `part`); the twin implements `crate::graphql::payload::UpdateInput`,
//!   whose `into_changes` refuses null on a required field
//!   (BAD_USER_INPUT naming it, through `crate::graphql::validate::not_null`)
//!   before any SQL and gives the fields present.
//!
//! The generated code names `crate::graphql::...` and `crate::error`:
//! this attribute is for the `api` crate alone.

use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote};
use syn::punctuated::Punctuated;
use syn::{Attribute, Fields, Ident, ItemStruct, LitStr, Meta, Token, Type};

/// The description of every input's `clientMutationId`.
pub const ECHO: &str = "Echoed in the payload, so a client can match the answer to its call.";

/// What the attribute's arguments ask for.
#[derive(Default)]
struct Options {
    /// The update twin's name.
    update: Option<Ident>,
    /// The twin's own description, if it says more than the default.
    update_doc: Option<LitStr>,
    /// The field enum's name.
    fields: Option<Ident>,
    /// No `clientMutationId`: a part of other inputs.
    part: bool,
}

impl Options {
    fn parse(attr: TokenStream2) -> syn::Result<Self> {
        let mut options = Self::default();
        let parser = syn::meta::parser(|meta| {
            if meta.path.is_ident("update") {
                options.update = Some(meta.value()?.parse()?);
            } else if meta.path.is_ident("update_doc") {
                options.update_doc = Some(meta.value()?.parse()?);
            } else if meta.path.is_ident("fields") {
                options.fields = Some(meta.value()?.parse()?);
            } else if meta.path.is_ident("part") {
                options.part = true;
            } else {
                return Err(meta.error("expected `update = Name`, `update_doc = \"..\"`, `fields = Name` or `part`"));
            }
            Ok(())
        });
        syn::parse::Parser::parse2(parser, attr)?;
        if options.update.is_some() != options.fields.is_some() {
            return Err(syn::Error::new(Span::call_site(), "`update` and `fields` go together"));
        }
        if options.update.is_none() && options.update_doc.is_some() {
            return Err(syn::Error::new(Span::call_site(), "`update_doc` describes the `update` twin"));
        }
        Ok(options)
    }
}

/// One field of the create input, as the twin and the enum need it.
struct Field {
    ident: Ident,
    /// The type as written on the create input.
    ty: Type,
    /// Its name in the schema (camelCase), for errors naming it.
    name: String,
    /// Its doc lines.
    docs: Vec<String>,
    /// Its attributes other than docs and `#[input]`, without `default`.
    graphql: Vec<Attribute>,
    create_only: bool,
    /// Null clears it: `Some(inner)` for an `Option<inner>`, or the type
    /// itself for a field marked `nullable` (null is its default).
    nullable: Option<Nullable>,
    on_update: Option<String>,
}

enum Nullable {
    /// An `Option<T>`: null is `None`; the twin holds `MaybeUndefined<T>`.
    Option(Box<Type>),
    /// Marked `#[input(nullable)]`: null is `T::default()`.
    Default,
}

/// Expands `#[mutation_input(..)]` on `item`; see the module docs.
pub fn expand(attr: TokenStream2, item: TokenStream2) -> syn::Result<TokenStream2> {
    let options = Options::parse(attr)?;
    let mut item: ItemStruct = syn::parse2(item)?;
    if !item.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(&item.generics, "a mutation input has no generics"));
    }
    // A unit struct (an input with nothing but `clientMutationId`) gets braces.
    if matches!(item.fields, Fields::Unit) {
        item.semi_token = None;
        item.fields = Fields::Named(syn::parse_quote!({}));
    }
    let Fields::Named(named) = &mut item.fields else {
        return Err(syn::Error::new_spanned(&item.fields, "a mutation input has named fields"));
    };
    let mut fields = Vec::new();
    for field in &mut named.named {
        fields.push(take_field(field)?);
    }
    if !options.part {
        if fields.iter().any(|f| f.ident == "client_mutation_id") {
            return Err(syn::Error::new_spanned(&item.ident, "clientMutationId is added by #[mutation_input]"));
        }
        named.named.push(syn::parse_quote! {
            #[doc = #ECHO]
            pub client_mutation_id: ::core::option::Option<::std::string::String>
        });
    }
    item.attrs.push(syn::parse_quote!(#[derive(async_graphql::InputObject)]));

    let mut out = quote!(#item);
    if let (Some(update), Some(enum_name)) = (&options.update, &options.fields) {
        let update_doc = options.update_doc.as_ref().map_or_else(
            || format!("Changes to {}; omitted fields stay as they are.", with_article(&thing(update))),
            LitStr::value,
        );
        out.extend(field_enum(&item, enum_name, &fields, options.part));
        out.extend(update_twin(&item, update, &update_doc, enum_name, &fields)?);
    }
    Ok(out)
}

/// Reads a field's docs and markers, leaving the `#[input]` markers off it.
fn take_field(field: &mut syn::Field) -> syn::Result<Field> {
    let ident = field.ident.clone().ok_or_else(|| syn::Error::new_spanned(&*field, "a named field"))?;
    let (mut create_only, mut nullable_marked, mut on_update) = (false, false, None);
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("input")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("create_only") {
                create_only = true;
            } else if meta.path.is_ident("nullable") {
                nullable_marked = true;
            } else if meta.path.is_ident("on_update") {
                on_update = Some(meta.value()?.parse::<LitStr>()?.value());
            } else {
                return Err(meta.error("expected `create_only`, `nullable` or `on_update = \"..\"`"));
            }
            Ok(())
        })?;
    }
    field.attrs.retain(|a| !a.path().is_ident("input"));
    let docs = field.attrs.iter().filter_map(doc_line).collect();
    let mut graphql = Vec::new();
    let mut name = camel_case(&ident.to_string());
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("graphql")) {
        let items = attr.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)?;
        let mut kept = Punctuated::<Meta, Token![,]>::new();
        for item in items {
            if let Meta::NameValue(nv) = &item
                && nv.path.is_ident("name")
                && let syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) = &nv.value
            {
                name = s.value();
            }
            // A default means "omitted is this value" on create; on an
            // update an omitted field is no change, so it has none.
            let path = item.path();
            if !(path.is_ident("default") || path.is_ident("default_with")) {
                kept.push(item);
            }
        }
        if !kept.is_empty() {
            graphql.push(syn::parse_quote!(#[graphql(#kept)]));
        }
    }
    let nullable = match (crate::from_model::option_of(&field.ty), nullable_marked) {
        (Some(_), true) => return Err(syn::Error::new_spanned(&field.ty, "an Option is nullable already")),
        (Some(inner), false) => Some(Nullable::Option(Box::new(inner.clone()))),
        (None, true) => Some(Nullable::Default),
        (None, false) => None,
    };
    Ok(Field { ident, ty: field.ty.clone(), name, docs, graphql, create_only, nullable, on_update })
}

/// The enum of field values and the create input's `into_fields`.
fn field_enum(item: &ItemStruct, enum_name: &Ident, fields: &[Field], part: bool) -> TokenStream2 {
    let input = &item.ident;
    let vis = &item.vis;
    let variants = fields.iter().map(|f| {
        let (variant, ty) = (variant(&f.ident), &f.ty);
        let doc = format!("`{}`.", f.name);
        quote!(#[doc = #doc] #variant(#ty))
    });
    let every = fields.iter().map(|f| {
        let (variant, ident) = (variant(&f.ident), &f.ident);
        quote!(#enum_name::#variant(self.#ident))
    });
    let enum_doc = format!(
        "A field value of a [`{input}`] (or of its update twin), as given: checked and written to its row by its `InputField` impl."
    );
    let (returns, result, into_doc) = if part {
        (quote!(::std::vec::Vec<#enum_name>), quote!(vec![#(#every),*]), "Every field, in order.")
    } else {
        (
            quote!((::std::vec::Vec<#enum_name>, ::core::option::Option<::std::string::String>)),
            quote!((vec![#(#every),*], self.client_mutation_id)),
            "Every field, in order, and the `clientMutationId`.",
        )
    };
    quote! {
        #[doc = #enum_doc]
        #vis enum #enum_name {
            #(#variants,)*
        }

        impl #input {
            #[doc = #into_doc]
            #vis fn into_fields(self) -> #returns {
                #result
            }
        }
    }
}

/// The update twin and its `UpdateInput` impl.
fn update_twin(
    item: &ItemStruct,
    update: &Ident,
    update_doc: &str,
    enum_name: &Ident,
    fields: &[Field],
) -> syn::Result<TokenStream2> {
    let vis = &item.vis;
    let changed: Vec<&Field> = fields.iter().filter(|f| !f.create_only).collect();
    if changed.iter().any(|f| f.ident == "id") {
        return Err(syn::Error::new_spanned(
            &item.ident,
            "a field `id` of the create input must be #[input(create_only)]",
        ));
    }
    let id_doc = format!("The {} to change.", thing(update));
    let twin_fields = changed.iter().map(|f| {
        let ident = &f.ident;
        let inner = match &f.nullable {
            Some(Nullable::Option(inner)) => &**inner,
            _ => &f.ty,
        };
        let docs = update_docs(f);
        let graphql = &f.graphql;
        quote! {
            #(#[doc = #docs])*
            #(#graphql)*
            pub #ident: async_graphql::MaybeUndefined<#inner>
        }
    });
    let pushes = changed.iter().map(|f| {
        let (ident, variant, name) = (&f.ident, variant(&f.ident), &f.name);
        match &f.nullable {
            None => quote! {
                if let ::core::option::Option::Some(value) = crate::graphql::validate::not_null(#name, self.#ident)? {
                    fields.push(#enum_name::#variant(value));
                }
            },
            Some(Nullable::Option(_)) => quote! {
                if let ::core::option::Option::Some(value) = ::core::option::Option::<::core::option::Option<_>>::from(self.#ident) {
                    fields.push(#enum_name::#variant(value));
                }
            },
            Some(Nullable::Default) => quote! {
                if let ::core::option::Option::Some(value) = ::core::option::Option::<::core::option::Option<_>>::from(self.#ident) {
                    fields.push(#enum_name::#variant(value.unwrap_or_default()));
                }
            },
        }
    });
    Ok(quote! {
        #[doc = #update_doc]
        #[derive(async_graphql::InputObject)]
        #vis struct #update {
            #[doc = #id_doc]
            pub id: async_graphql::ID,
            #(#twin_fields,)*
            #[doc = #ECHO]
            pub client_mutation_id: ::core::option::Option<::std::string::String>,
        }

        impl crate::graphql::payload::UpdateInput for #update {
            type Field = #enum_name;

            fn id(&self) -> &async_graphql::ID {
                &self.id
            }

            fn into_changes(self) -> crate::error::ApiResult<crate::graphql::payload::Changes<#enum_name>> {
                let mut fields = ::std::vec::Vec::new();
                #(#pushes)*
                ::core::result::Result::Ok(crate::graphql::payload::Changes {
                    id: self.id,
                    fields,
                    client_mutation_id: self.client_mutation_id,
                })
            }
        }
    })
}

/// The create field's doc lines, the last one ending with its null rule
/// and the update's note.
fn update_docs(field: &Field) -> Vec<String> {
    let mut docs = field.docs.clone();
    let rule = if field.nullable.is_some() {
        if is_plural(&field.ty) { "null removes them" } else { "null removes it" }
    } else {
        "cannot be null"
    };
    let note = field.on_update.as_ref().map_or_else(String::new, |note| format!("; {note}"));
    match docs.last_mut() {
        Some(last) => {
            let text = last.trim_end().trim_end_matches('.');
            *last = format!("{text}; {rule}{note}.");
        }
        None => docs.push(format!(" {}; {rule}{note}.", field.name)),
    }
    docs
}

fn doc_line(attr: &Attribute) -> Option<String> {
    let Meta::NameValue(nv) = &attr.meta else { return None };
    if !nv.path.is_ident("doc") {
        return None;
    }
    let syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) = &nv.value else { return None };
    Some(s.value())
}

/// A list (`Vec<..>`): its description speaks of "them".
fn is_plural(ty: &Type) -> bool {
    matches!(ty, Type::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "Vec"))
}

/// `place_id` -> `PlaceId`.
fn variant(ident: &Ident) -> Ident {
    let mut name = String::new();
    for word in ident.to_string().split('_').filter(|w| !w.is_empty()) {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            name.extend(first.to_uppercase());
            name.push_str(chars.as_str());
        }
    }
    format_ident!("{name}", span = ident.span())
}

/// `user_ratings_total` -> `userRatingsTotal`, async-graphql's field names.
fn camel_case(snake: &str) -> String {
    let mut out = String::new();
    for (i, word) in snake.split('_').filter(|w| !w.is_empty()).enumerate() {
        if i == 0 {
            out.push_str(word);
        } else {
            let mut chars = word.chars();
            if let Some(first) = chars.next() {
                out.extend(first.to_uppercase());
                out.push_str(chars.as_str());
            }
        }
    }
    out
}

/// `UpdateAirdropProjectInput` -> "airdrop project".
fn thing(update: &Ident) -> String {
    let name = update.to_string();
    let name = name.strip_prefix("Update").unwrap_or(&name);
    let name = name.strip_suffix("Input").unwrap_or(name);
    let mut words = String::new();
    for c in name.chars() {
        if c.is_uppercase() && !words.is_empty() {
            words.push(' ');
        }
        words.extend(c.to_lowercase());
    }
    words
}

/// "a review", "an airdrop project".
fn with_article(thing: &str) -> String {
    let article = if thing.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
    format!("{article} {thing}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expanded(attr: TokenStream2, item: TokenStream2) -> syn::File {
        let out = expand(attr, item).expect("expands");
        syn::parse2(out).expect("parses as items")
    }

    fn find_struct<'a>(file: &'a syn::File, name: &str) -> &'a ItemStruct {
        file.items
            .iter()
            .find_map(|item| match item {
                syn::Item::Struct(s) if s.ident == name => Some(s),
                _ => None,
            })
            .expect("the struct")
    }

    /// Each field as `name: type`, with its docs joined.
    fn fields_of(item: &ItemStruct) -> Vec<(String, String, String)> {
        item.fields
            .iter()
            .map(|f| {
                let ty = &f.ty;
                let docs: Vec<String> = f.attrs.iter().filter_map(doc_line).collect();
                (
                    f.ident.as_ref().map(ToString::to_string).unwrap_or_default(),
                    quote!(#ty).to_string(),
                    docs.join("\n"),
                )
            })
            .collect()
    }

    fn review() -> syn::File {
        expanded(
            quote!(update = UpdateReviewInput, fields = ReviewField),
            quote! {
                /// A new review.
                pub struct CreateReviewInput {
                    /// The place to review.
                    #[input(create_only)]
                    pub place_id: ID,
                    /// 0 to 5.
                    pub rating: f64,
                    /// Optional text, at most 5000 characters.
                    pub comment: Option<String>,
                    /// Google place types.
                    #[graphql(default)]
                    #[input(nullable, on_update = "so does an empty list")]
                    pub types: Vec<String>,
                }
            },
        )
    }

    #[test]
    fn every_input_ends_with_its_client_mutation_id_described_once_for_all() {
        let file = expanded(
            quote!(),
            quote!(
                pub struct SignOutInput;
            ),
        );
        let fields = fields_of(find_struct(&file, "SignOutInput"));
        assert_eq!(fields.len(), 1);
        assert_eq!(fields[0].0, "client_mutation_id");
        assert_eq!(fields[0].2, ECHO);

        let part = expanded(
            quote!(part),
            quote!(
                pub struct PlaceInput {
                    pub name: String,
                }
            ),
        );
        assert_eq!(fields_of(find_struct(&part, "PlaceInput")).len(), 1, "a part has no clientMutationId");
    }

    #[test]
    fn the_update_twin_has_the_id_first_then_each_changeable_field_maybe_undefined_with_its_null_rule() {
        let file = review();
        let twin = find_struct(&file, "UpdateReviewInput");
        let fields = fields_of(twin);
        let names: Vec<&str> = fields.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(names, ["id", "rating", "comment", "types", "client_mutation_id"]);
        assert_eq!(fields[0].2, "The review to change.");
        assert!(fields[1].1.contains("MaybeUndefined < f64 >"), "{}", fields[1].1);
        assert_eq!(fields[1].2, " 0 to 5; cannot be null.");
        assert!(fields[2].1.contains("MaybeUndefined < String >"), "{}", fields[2].1);
        assert_eq!(fields[2].2, " Optional text, at most 5000 characters; null removes it.");
        assert_eq!(fields[3].2, " Google place types; null removes them; so does an empty list.");
        assert_eq!(fields[4].2, ECHO);
        let attrs = quote!(#twin).to_string();
        assert!(!attrs.contains("default"), "an update field has no default: {attrs}");
        let docs: Vec<String> = twin.attrs.iter().filter_map(doc_line).collect();
        assert_eq!(docs, ["Changes to a review; omitted fields stay as they are."]);
    }

    #[test]
    fn the_twin_refuses_null_on_a_required_field_by_its_schema_name_and_keeps_the_create_only_ones_out() {
        let file = review();
        let code = quote!(#file).to_string();
        assert!(code.contains("not_null (\"rating\" , self . rating)"), "{code}");
        assert!(!code.contains("not_null (\"comment\""), "{code}");
        assert!(code.contains("ReviewField :: Types (value . unwrap_or_default ())"), "{code}");
        assert!(!code.contains("self . place_id) ?"), "{code}");
        // The create input gives every field, create-only ones included.
        assert!(code.contains("ReviewField :: PlaceId (self . place_id)"), "{code}");
    }

    #[test]
    fn schema_names_and_descriptions_are_derived_from_the_rust_names() {
        assert_eq!(camel_case("user_ratings_total"), "userRatingsTotal");
        assert_eq!(variant(&format_ident!("user_ratings_total")).to_string(), "UserRatingsTotal");
        assert_eq!(thing(&format_ident!("UpdateAirdropProjectInput")), "airdrop project");
        assert_eq!(with_article("airdrop project"), "an airdrop project");
        assert_eq!(with_article("review"), "a review");
    }

    #[test]
    fn half_a_twin_a_hand_written_client_mutation_id_or_a_changeable_id_is_refused() {
        let refused = [
            ("update = UpdateX", "pub struct CreateX { pub a: i32 }"),
            ("update_doc = \"x\"", "pub struct CreateX { pub a: i32 }"),
            ("", "pub struct X { pub client_mutation_id: Option<String> }"),
            ("update = UpdateX, fields = XField", "pub struct CreateX { pub id: ID }"),
            ("", "pub struct X { #[input(sometimes)] pub a: i32 }"),
            ("", "pub struct X { #[input(nullable)] pub a: Option<i32> }"),
        ];
        for (attr, item) in refused {
            let expanded = expand(attr.parse().expect("tokens"), item.parse().expect("tokens"));
            assert!(expanded.is_err(), "{attr} on {item}");
        }
    }
}
