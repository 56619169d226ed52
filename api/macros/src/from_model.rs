//! `#[derive(FromModel)]`: `From<Model>` for a GraphQL object, field by
//! field, so a domain's types do not spell out each copy from the row.
//!
//! Every GraphQL object of a table was a `From<entity::x::Model>` of the
//! same shape in each domain: the global id, the raw key, each column
//! copied, each foreign key turned into an `ID`. The derive writes that
//! impl from the object's fields; the common field needs no attribute:
//!
//! ```ignore
//! #[derive(SimpleObject, FromModel, Clone)]
//! #[from_model(entity::routine_run::Model)]
//! pub struct RoutineRun {
//!     pub id: GlobalId,       // GlobalId::new("RoutineRun", row.id.clone())
//!     pub row_id: RawId,      // RawId::from(row.id)
//!     pub routine_id: RawId,  // RawId::from(row.routine_id)
//!     pub end_time: Option<DateTime<FixedOffset>>, // row.end_time.into()
//!     #[from_model(with = RunStatus::parse)]
//!     pub status: RunStatus, // RunStatus::parse(row.status)
//! }
//! ```
//!
//! The rules, for a field `f` of type `T`:
//! - `id: GlobalId` is the global id (`crate::graphql::ids::GlobalId`) of
//!   the struct's GraphQL name (its `#[graphql(name = "..")]`, else its Rust
//!   name) and the key column; `row_id: RawId` is the key's raw value. Both
//!   keep the key and write it out only if a client selects them. The key
//!   column is `id` unless the struct attribute names it
//!   (`#[from_model(entity::x::Model, key = user_id)]`). A struct with a
//!   global id fails to compile unless its GraphQL name is one of the
//!   `Node` types (`crate::graphql::ids::is_node_type`): an id `node`
//!   cannot read back would be served as if it were one.
//! - `f: RawId` is `RawId::from(row.f)`, `f: Option<RawId>` the same
//!   inside the option (a raw key, as foreign keys are); a plain
//!   `id: RawId` is therefore the raw key, not the global id. An `ID` field
//!   is refused: written out eagerly, ids were 8 % of a page's work.
//! - Any other `f` is `row.f.into()`, so a column converts wherever a
//!   `From` exists (`i64` to `BigInt`, `serde_json::Value` to `Json`).
//! - A column that ids read (`id`, `row_id`, a `RawId`) is copied for
//!   each reader but the last, which takes it when no other field reads
//!   it; the ids are placed before the other fields, so one that moves the
//!   column (`with`, `into`) comes after their copies.
//!
//! A field attribute covers the rest: `#[from_model(with = path)]` is
//! `path(row.f)` (the column by value), `#[from_model(column = c)]` reads
//! column `c` instead of `f` (and so makes an `id: RawId` the raw value of
//! `c`), `#[from_model(default)]` is `Default::default()` for a field the
//! row does not hold. A field the model lacks is rustc's "no field" error,
//! pointed at the struct's field.
//!
//! The generated code names `crate::graphql::ids`: this derive is for the
//! `api` crate alone.

use proc_macro2::{Span, TokenStream as TokenStream2, TokenTree};
use quote::{quote, quote_spanned};
use syn::parse::ParseStream;
use syn::spanned::Spanned;
use syn::{Attribute, Data, DeriveInput, Field, Fields, GenericArgument, Ident, Path, PathArguments, Token, Type};

/// The struct attribute: the row type and its key column.
struct Source {
    model: Type,
    key: Ident,
}

/// Where one field's value comes from.
enum Value {
    /// The global id of the struct's type and the key column.
    Global,
    /// The key column's raw value as a `RawId`.
    RowId,
    /// A column, converted by its field's type or a function.
    Column { column: Ident, with: Option<Path>, as_id: IdKind },
    /// Not in the row: `Default::default()`.
    Default,
}

/// How a column becomes its field when no function is named.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum IdKind {
    /// `RawId::from(row.c)`.
    Id,
    /// `row.c.map(RawId::from)`.
    OptionId,
    /// `row.c.into()`.
    Into,
}

/// The `From<Model>` impl for `input`, or the first error with its span.
pub fn derive(input: &DeriveInput) -> syn::Result<TokenStream2> {
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new_spanned(&input.ident, "FromModel derives only structs"));
    };
    let Fields::Named(fields) = &data.fields else {
        return Err(syn::Error::new_spanned(&input.ident, "FromModel needs a struct with named fields"));
    };
    let source = source(input)?;
    let type_name = graphql_name(input)?;

    let mut values = Vec::new();
    for field in &fields.named {
        values.push((field, value(field)?));
    }
    // Ids first: an id may share its column with another field (the global
    // id and `row_id` both read the key), so each copies the column, and a
    // field that moves it comes after them (a struct literal evaluates in
    // the order written).
    values.sort_by_key(|(_, value)| !copies(value));

    let row = Ident::new("row", Span::call_site());
    let key = &source.key;
    let column_of = |value: &Value| match value {
        Value::Global | Value::RowId => Some(key.clone()),
        Value::Column { column, .. } => Some(column.clone()),
        Value::Default => None,
    };
    let inits = values.iter().enumerate().map(|(i, (field, value))| {
        let name = field.ident.as_ref().expect("named fields have names");
        // The last field to read a column takes it; those before copy it
        // (a copy of a text key per row and id was a steady share of a
        // page's allocations: issue 11).
        let column = column_of(value);
        let source = if values[i + 1..].iter().any(|(_, later)| column_of(later) == column) {
            quote_spanned!(field.span()=> ::core::clone::Clone::clone(&#row.#column))
        } else {
            quote_spanned!(field.span()=> #row.#column)
        };
        let expr = match value {
            Value::Global => quote_spanned!(field.span()=> crate::graphql::ids::GlobalId::new(#type_name, #source)),
            Value::RowId => quote_spanned!(field.span()=> crate::graphql::ids::RawId::from(#source)),
            Value::Default => quote_spanned!(field.span()=> ::core::default::Default::default()),
            Value::Column { column, with: Some(with), .. } => quote_spanned!(field.span()=> #with(#row.#column)),
            Value::Column { column, with: None, as_id } => match as_id {
                IdKind::Id => quote_spanned!(field.span()=> crate::graphql::ids::RawId::from(#source)),
                IdKind::OptionId => quote_spanned!(field.span()=> #source.map(crate::graphql::ids::RawId::from)),
                IdKind::Into => quote_spanned!(field.span()=> ::core::convert::Into::into(#row.#column)),
            },
        };
        quote!(#name: #expr)
    });

    let check = values.iter().any(|(_, v)| matches!(v, Value::Global)).then(|| {
        let message = format!(
            "{type_name} has a global `id` but is not a type of `Node` (its domain's `nodes!`); \
             a raw id is `id: RawId`"
        );
        quote!(
            const _: () = assert!(crate::graphql::ids::is_node_type(#type_name), #message);
        )
    });

    let ident = &input.ident;
    let model = &source.model;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    Ok(quote! {
        impl #impl_generics ::core::convert::From<#model> for #ident #ty_generics #where_clause {
            fn from(#row: #model) -> Self {
                Self { #(#inits),* }
            }
        }
        #check
    })
}

/// Whether a field's value copies its column when another field reads it
/// too (an id), rather than moving or converting it.
fn copies(value: &Value) -> bool {
    matches!(
        value,
        Value::Global | Value::RowId | Value::Column { with: None, as_id: IdKind::Id | IdKind::OptionId, .. }
    )
}

/// The struct's `#[from_model(Model[, key = column])]`.
fn source(input: &DeriveInput) -> syn::Result<Source> {
    let mut found = input.attrs.iter().filter(|a| is_from_model(a));
    let Some(attr) = found.next() else {
        return Err(syn::Error::new_spanned(
            &input.ident,
            "FromModel needs the row type: #[from_model(entity::x::Model)]",
        ));
    };
    if let Some(again) = found.next() {
        return Err(syn::Error::new_spanned(again, "only one #[from_model(..)] on the struct"));
    }
    attr.parse_args_with(|input: ParseStream| {
        let model: Type = input.parse()?;
        let mut key = Ident::new("id", Span::call_site());
        while !input.is_empty() {
            input.parse::<Token![,]>()?;
            if input.is_empty() {
                break;
            }
            let name: Ident = input.parse()?;
            if name != "key" {
                return Err(syn::Error::new(name.span(), "unknown from_model argument; expected `key = column`"));
            }
            input.parse::<Token![=]>()?;
            key = input.parse()?;
        }
        Ok(Source { model, key })
    })
}

/// Where `field`'s value comes from, by its name, its type and its
/// `#[from_model(..)]`.
fn value(field: &Field) -> syn::Result<Value> {
    let name = field.ident.clone().expect("named fields have names");
    let mut column = None;
    let mut with = None;
    let mut default = None;
    for attr in field.attrs.iter().filter(|a| is_from_model(a)) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("with") {
                with = Some(meta.value()?.parse::<Path>()?);
            } else if meta.path.is_ident("column") {
                column = Some(meta.value()?.parse::<Ident>()?);
            } else if meta.path.is_ident("default") {
                default = Some(meta.path.span());
            } else {
                return Err(
                    meta.error("unknown from_model attribute; expected `with = path`, `column = name` or `default`")
                );
            }
            Ok(())
        })?;
    }
    if let Some(span) = default {
        if column.is_some() || with.is_some() {
            return Err(syn::Error::new(span, "`default` reads no column: it takes no `with` or `column`"));
        }
        return Ok(Value::Default);
    }
    if is_named(&field.ty, "ID") || option_of(&field.ty).is_some_and(|t| is_named(t, "ID")) {
        return Err(syn::Error::new_spanned(
            &field.ty,
            "an id of a row is kept as its key and written out when selected: `GlobalId` for the object's \
             global `id`, `RawId` for a raw key (`rowId`, foreign keys)",
        ));
    }
    let plain = column.is_none() && with.is_none();
    if is_named(&field.ty, "GlobalId") {
        if name != "id" || !plain {
            return Err(syn::Error::new_spanned(
                &field.ty,
                "`GlobalId` is the object's own `id`, of its key column: a field named `id` without `with` or `column`",
            ));
        }
        return Ok(Value::Global);
    }
    let as_id = if is_named(&field.ty, "RawId") {
        IdKind::Id
    } else if option_of(&field.ty).is_some_and(|t| is_named(t, "RawId")) {
        IdKind::OptionId
    } else {
        IdKind::Into
    };
    if plain && as_id == IdKind::Id && name == "row_id" {
        return Ok(Value::RowId);
    }
    Ok(Value::Column { column: column.unwrap_or(name), with, as_id })
}

/// The struct's GraphQL name: `#[graphql(name = "..")]`, else its Rust
/// name (as async-graphql names it).
fn graphql_name(input: &DeriveInput) -> syn::Result<String> {
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("graphql")) {
        let syn::Meta::List(list) = &attr.meta else { continue };
        // Only the top level of the list: `name` inside `concrete(..)` names
        // something else. async-graphql's whole grammar is not needed here.
        let tokens: Vec<TokenTree> = list.tokens.clone().into_iter().collect();
        for window in tokens.windows(3) {
            if let [TokenTree::Ident(word), TokenTree::Punct(eq), TokenTree::Literal(value)] = window
                && word == "name"
                && eq.as_char() == '='
            {
                return syn::parse2::<syn::LitStr>(TokenTree::Literal(value.clone()).into()).map(|s| s.value());
            }
        }
    }
    Ok(input.ident.to_string())
}

fn is_from_model(attr: &Attribute) -> bool {
    attr.path().is_ident("from_model")
}

/// The type `name` (`ID`, `RawId`), however it is imported (its last path
/// segment, no arguments).
fn is_named(ty: &Type, name: &str) -> bool {
    let Type::Path(path) = ty else { return false };
    path.qself.is_none()
        && path.path.segments.last().is_some_and(|s| s.ident == name && matches!(s.arguments, PathArguments::None))
}

/// `T` of an `Option<T>` (also for `#[mutation_input]`).
pub(crate) fn option_of(ty: &Type) -> Option<&Type> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != "Option" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else { return None };
    match args.args.first()? {
        GenericArgument::Type(inner) if args.args.len() == 1 => Some(inner),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    fn expanded(input: DeriveInput) -> String {
        derive(&input).expect("derives").to_string()
    }

    fn refused(input: DeriveInput) -> String {
        derive(&input).err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn a_node_gets_its_global_id_raw_key_ids_and_columns_without_field_attributes() {
        let out = expanded(parse_quote! {
            #[derive(SimpleObject)]
            #[graphql(complex)]
            #[from_model(entity::comment::Model)]
            pub struct Comment {
                pub body: String,
                pub id: GlobalId,
                pub row_id: RawId,
                pub post_id: ids::RawId,
                pub parent_id: Option<RawId>,
                pub created_at: DateTime<FixedOffset>,
            }
        });
        assert!(out.contains("From < entity :: comment :: Model > for Comment"), "{out}");
        assert!(
            out.contains(
                "id : crate :: graphql :: ids :: GlobalId :: new (\"Comment\" , :: core :: clone :: Clone :: clone (& row . id))"
            ),
            "{out}"
        );
        // The key's last reader takes it; so do columns read once.
        assert!(out.contains("row_id : crate :: graphql :: ids :: RawId :: from (row . id)"), "{out}");
        assert!(out.contains("post_id : crate :: graphql :: ids :: RawId :: from (row . post_id)"), "{out}");
        assert!(out.contains("parent_id : row . parent_id . map (crate :: graphql :: ids :: RawId :: from)"), "{out}");
        assert!(out.contains("created_at : :: core :: convert :: Into :: into (row . created_at)"), "{out}");
        // The key fields come first, before `body` may move a column.
        assert!(out.find("id : crate").unwrap_or(usize::MAX) < out.find("body :").unwrap_or(0), "{out}");
        assert!(out.contains("is_node_type (\"Comment\")"), "{out}");
    }

    #[test]
    fn the_key_column_and_the_graphql_name_can_be_named() {
        let out = expanded(parse_quote! {
            #[graphql(complex, name = "Stats")]
            #[from_model(entity::user_stats::Model, key = user_id)]
            pub struct UserStats { pub id: GlobalId, pub row_id: RawId }
        });
        assert!(
            out.contains("GlobalId :: new (\"Stats\" , :: core :: clone :: Clone :: clone (& row . user_id))"),
            "{out}"
        );
        assert!(out.contains("RawId :: from (row . user_id)"), "{out}");
    }

    #[test]
    fn a_column_read_by_several_fields_is_copied_for_all_but_the_last_which_takes_it() {
        let out = expanded(parse_quote! {
            #[from_model(entity::x::Model)]
            pub struct X {
                #[from_model(with = Owner::new)]
                pub owner: Owner,
                #[from_model(column = owner)]
                pub owner_id: RawId,
                #[from_model(column = owner)]
                pub maybe_owner: Option<RawId>,
            }
        });
        assert!(
            out.contains("owner_id : crate :: graphql :: ids :: RawId :: from (:: core :: clone :: Clone :: clone (& row . owner))"),
            "{out}"
        );
        assert!(
            out.contains(
                "maybe_owner : :: core :: clone :: Clone :: clone (& row . owner) . map (crate :: graphql :: ids :: RawId :: from)"
            ),
            "{out}"
        );
        // The field that moves the column comes after both copies.
        assert!(out.contains("owner : Owner :: new (row . owner)"), "{out}");
        let moved = out.find("owner : Owner").unwrap_or(0);
        assert!(out.find("owner_id :").unwrap_or(usize::MAX) < moved, "{out}");
        assert!(out.find("maybe_owner :").unwrap_or(usize::MAX) < moved, "{out}");
    }

    #[test]
    fn field_attributes_convert_rename_or_default_a_field() {
        let out = expanded(parse_quote! {
            #[from_model(entity::x::Model)]
            pub struct X {
                #[from_model(with = RunStatus::parse)]
                pub status: RunStatus,
                #[from_model(column = user_id)]
                pub id: RawId,
                #[from_model(column = types, with = split_types)]
                pub kinds: Vec<String>,
                #[from_model(default)]
                pub place: Option<Place>,
            }
        });
        assert!(out.contains("status : RunStatus :: parse (row . status)"), "{out}");
        assert!(out.contains("id : crate :: graphql :: ids :: RawId :: from (row . user_id)"), "{out}");
        assert!(out.contains("kinds : split_types (row . types)"), "{out}");
        assert!(out.contains("place : :: core :: default :: Default :: default ()"), "{out}");
        assert!(!out.contains("is_node_type"), "a raw id is not checked as a node: {out}");
    }

    #[test]
    fn unknown_attributes_a_missing_row_type_and_non_structs_are_refused() {
        let unknown = refused(parse_quote! {
            #[from_model(entity::x::Model)]
            struct X { #[from_model(rename = y)] a: i32 }
        });
        assert!(unknown.contains("unknown from_model attribute"), "{unknown}");
        let argument = refused(parse_quote! { #[from_model(entity::x::Model, primary = y)] struct X { a: i32 } });
        assert!(argument.contains("unknown from_model argument"), "{argument}");
        let missing = refused(parse_quote! { struct X { a: i32 } });
        assert!(missing.contains("needs the row type"), "{missing}");
        let both = refused(parse_quote! {
            #[from_model(entity::x::Model)]
            struct X { #[from_model(default, with = f)] a: i32 }
        });
        assert!(both.contains("`default` reads no column"), "{both}");
        let tuple = refused(parse_quote! { #[from_model(entity::x::Model)] struct X(i32); });
        assert!(tuple.contains("named fields"), "{tuple}");
        let enumeration = refused(parse_quote! { #[from_model(entity::x::Model)] enum X { A } });
        assert!(enumeration.contains("only structs"), "{enumeration}");
    }

    #[test]
    fn an_eager_id_and_a_global_id_of_another_field_or_column_are_refused() {
        let eager = refused(parse_quote! { #[from_model(entity::x::Model)] struct X { user_id: Option<ID> } });
        assert!(eager.contains("kept as its key and written out when selected"), "{eager}");
        let misnamed = refused(parse_quote! { #[from_model(entity::x::Model)] struct X { user_id: GlobalId } });
        assert!(misnamed.contains("`GlobalId` is the object's own `id`"), "{misnamed}");
        let column = refused(parse_quote! {
            #[from_model(entity::x::Model)]
            struct X { #[from_model(column = user_id)] id: GlobalId }
        });
        assert!(column.contains("`GlobalId` is the object's own `id`"), "{column}");
    }
}
