//! Derive macros for `openedx-events`: `#[derive(AvroRecord)]` for payload data
//! classes and `#[derive(OpenEdxEvent)]` for event types. See the
//! `openedx_events::data` module for how to use them.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;
use quote::quote;
use syn::{parse_macro_input, Data, DeriveInput, Fields, LitBool, LitInt, LitStr};

/// Implement `openedx_events::data::AvroData` for a struct with named fields:
/// the struct becomes an Avro record named after it (override with
/// `#[avro(name = "Other")]`), its fields become record fields in order, and
/// `Option<T>` fields become optional (`["null", T]`, default null).
#[proc_macro_derive(AvroRecord, attributes(avro))]
pub fn derive_avro_record(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand_record(&input).unwrap_or_else(|e| e.to_compile_error()).into()
}

/// Implement `openedx_events::data::OpenEdxEvent` for a struct whose fields
/// are the event's payload arguments:
/// `#[openedx_event(event_type = "org.openedx....v1", minor_version = 0)]`,
/// plus `unserializable = true` for events that cannot travel on the bus.
#[proc_macro_derive(OpenEdxEvent, attributes(openedx_event))]
pub fn derive_openedx_event(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand_event(&input).unwrap_or_else(|e| e.to_compile_error()).into()
}

struct FieldInfo {
    ident: syn::Ident,
    name: String,
    ty: syn::Type,
}

fn named_fields(input: &DeriveInput) -> syn::Result<Vec<FieldInfo>> {
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new_spanned(&input.ident, "only structs can be derived"));
    };
    let Fields::Named(fields) = &data.fields else {
        return Err(syn::Error::new_spanned(
            &input.ident,
            "only structs with named fields can be derived",
        ));
    };
    let mut out = Vec::new();
    for f in &fields.named {
        let Some(ident) = f.ident.clone() else { continue };
        let mut name = ident.to_string().trim_start_matches("r#").to_string();
        for attr in &f.attrs {
            if attr.path().is_ident("avro") {
                attr.parse_nested_meta(|meta| {
                    if meta.path.is_ident("rename") {
                        name = meta.value()?.parse::<LitStr>()?.value();
                        Ok(())
                    } else {
                        Err(meta.error("unknown avro field attribute (expected `rename`)"))
                    }
                })?;
            }
        }
        out.push(FieldInfo {
            ident,
            name,
            ty: f.ty.clone(),
        });
    }
    Ok(out)
}

/// Field definitions, `to_value` pushes and `from_value` takes, shared by both derives.
fn field_code(fields: &[FieldInfo]) -> (Vec<TokenStream2>, Vec<TokenStream2>, Vec<TokenStream2>) {
    let mut defs = Vec::new();
    let mut pushes = Vec::new();
    let mut takes = Vec::new();
    for f in fields {
        let (ident, name, ty) = (&f.ident, &f.name, &f.ty);
        defs.push(quote! {
            ::openedx_events::types::FieldDef {
                name: #name.to_string(),
                ty: <#ty as ::openedx_events::data::AvroData>::data_type(),
                optional: <#ty as ::openedx_events::data::AvroData>::OPTIONAL,
            }
        });
        pushes.push(quote! {
            rec.push(#name, ::openedx_events::data::AvroData::to_value(&self.#ident));
        });
        takes.push(quote! {
            #ident: ::openedx_events::data::take_field::<#ty>(&mut rec, #name)?
        });
    }
    (defs, pushes, takes)
}

fn expand_record(input: &DeriveInput) -> syn::Result<TokenStream2> {
    let ident = &input.ident;
    let mut record_name = ident.to_string();
    for attr in &input.attrs {
        if attr.path().is_ident("avro") {
            attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("name") {
                    record_name = meta.value()?.parse::<LitStr>()?.value();
                    Ok(())
                } else {
                    Err(meta.error("unknown avro attribute (expected `name`)"))
                }
            })?;
        }
    }
    let fields = named_fields(input)?;
    let n = fields.len();
    let (defs, pushes, takes) = field_code(&fields);
    Ok(quote! {
        impl ::openedx_events::data::AvroData for #ident {
            fn data_type() -> ::openedx_events::types::DataType {
                static TYPE: ::std::sync::OnceLock<::std::sync::Arc<::openedx_events::types::RecordType>> =
                    ::std::sync::OnceLock::new();
                ::openedx_events::types::DataType::Record(
                    TYPE.get_or_init(|| ::std::sync::Arc::new(::openedx_events::types::RecordType::new(
                        #record_name,
                        vec![#(#defs),*],
                    )))
                    .clone(),
                )
            }

            fn to_value(&self) -> ::openedx_events::value::Value {
                let mut rec = ::openedx_events::value::Record::with_capacity(#n);
                #(#pushes)*
                ::openedx_events::value::Value::Record(rec)
            }

            fn from_value(value: ::openedx_events::value::Value) -> ::std::result::Result<Self, ::openedx_events::data::DataError> {
                let mut rec = ::openedx_events::data::expect_record(value, #record_name)?;
                Ok(Self { #(#takes),* })
            }
        }
    })
}

fn expand_event(input: &DeriveInput) -> syn::Result<TokenStream2> {
    let ident = &input.ident;
    let mut event_type: Option<String> = None;
    let mut minor_version: u32 = 0;
    let mut unserializable = false;
    for attr in &input.attrs {
        if attr.path().is_ident("openedx_event") {
            attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("event_type") {
                    event_type = Some(meta.value()?.parse::<LitStr>()?.value());
                } else if meta.path.is_ident("minor_version") {
                    minor_version = meta.value()?.parse::<LitInt>()?.base10_parse()?;
                } else if meta.path.is_ident("unserializable") {
                    unserializable = match meta.value() {
                        Ok(v) => v.parse::<LitBool>()?.value,
                        Err(_) => true,
                    };
                } else {
                    return Err(meta.error("unknown openedx_event attribute"));
                }
                Ok(())
            })?;
        }
    }
    let Some(event_type) = event_type else {
        return Err(syn::Error::new_spanned(
            ident,
            "missing #[openedx_event(event_type = \"...\")]",
        ));
    };
    let fields = named_fields(input)?;
    let n = fields.len();
    let (defs, pushes, takes) = field_code(&fields);
    Ok(quote! {
        impl ::openedx_events::data::OpenEdxEvent for #ident {
            const EVENT_TYPE: &'static str = #event_type;

            fn event_type() -> &'static ::std::sync::Arc<::openedx_events::event::EventType> {
                static TYPE: ::std::sync::OnceLock<::std::sync::Arc<::openedx_events::event::EventType>> =
                    ::std::sync::OnceLock::new();
                TYPE.get_or_init(|| ::std::sync::Arc::new(::openedx_events::event::EventType::new(
                    #event_type,
                    #minor_version,
                    vec![#(#defs),*],
                ).with_unserializable(#unserializable)))
            }

            fn to_data(&self) -> ::openedx_events::value::Record {
                let mut rec = ::openedx_events::value::Record::with_capacity(#n);
                #(#pushes)*
                rec
            }

            fn from_data(mut rec: ::openedx_events::value::Record) -> ::std::result::Result<Self, ::openedx_events::data::DataError> {
                Ok(Self { #(#takes),* })
            }
        }
    })
}
