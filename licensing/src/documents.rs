//! Printable HTML of the documents the agreement and the discount seed name: the offer-invoice
//! (3.2), the transfer document — UPD or one-sided act with the grant date (3.2.5) — and the
//! corrective invoice of a retro-discount with values before, after and their difference (Tax
//! Code 169.5.2, as the discount seed lists). Plain HTML with print CSS: any browser prints it
//! or saves it as PDF, and nothing here needs a rendering engine.

use std::fmt::Write;

use crate::account::Account;
use crate::money::Money;
use crate::quote::Quote;
use crate::store::{CorrectiveInvoice, Invoice, TransferDocument};
use crate::tariff::VatMode;

/// The licensor's requisites printed on every document.
#[derive(Clone, Debug)]
pub struct Seller {
    pub name: String,
    pub inn: String,
    pub address: String,
}

impl Default for Seller {
    fn default() -> Self {
        Seller {
            name: "Parley".into(),
            inn: "—".into(),
            address: "—".into(),
        }
    }
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `15245.90` → `15 245,90`, the Russian way amounts are printed.
pub fn rub(m: Money) -> String {
    let s = m.to_string();
    let (sign, digits) = s
        .strip_prefix('-')
        .map(|d| ("-", d))
        .unwrap_or(("", s.as_str()));
    let (int, frac) = digits.split_once('.').unwrap_or((digits, "00"));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push('\u{a0}');
        }
        grouped.push(c);
    }
    format!("{sign}{grouped},{frac}")
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"ru\"><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>body{{font:14px/1.4 sans-serif;max-width:800px;margin:2em auto}}\
         table{{border-collapse:collapse;width:100%}}td,th{{border:1px solid #444;padding:4px 6px}}\
         td.n{{text-align:right;white-space:nowrap}}@media print{{body{{margin:0}}}}</style></head>\
         <body>{body}</body></html>\n",
        t = esc(title)
    )
}

fn parties(seller: &Seller, buyer: &Account) -> String {
    format!(
        "<p><b>Лицензиар / Licensor:</b> {} · ИНН {} · {}</p>\
         <p><b>Лицензиат / Licensee:</b> {} · ИНН {} · {}</p>",
        esc(&seller.name),
        esc(&seller.inn),
        esc(&seller.address),
        esc(&buyer.name),
        esc(buyer.inn.as_ref().map(|i| i.as_str()).unwrap_or("—")),
        esc(buyer.address.as_deref().unwrap_or("—")),
    )
}

fn lines_table(q: &Quote, vat: VatMode) -> String {
    let mut t = String::from(
        "<table><tr><th>№</th><th>Наименование / Item</th><th>Период / Term</th><th>Кол-во / Seats</th>\
         <th>Цена / Unit price, RUB</th><th>Сумма / Amount, RUB</th></tr>",
    );
    for (i, l) in q.lines.iter().enumerate() {
        let formula = l
            .formula
            .map(|f| {
                format!(
                    "<br><small>A = {} × {} / {} (D1 {} − D2 {} − {} дн.)</small>",
                    f.b, f.days, f.basis, f.d1, f.d2, f.logistics_days
                )
            })
            .unwrap_or_default();
        let _ = write!(
            t,
            "<tr><td>{}</td><td>Лицензия, тариф «{}» ({}){}</td><td>{} — {}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td></tr>",
            i + 1,
            esc(q.tariff.as_str()),
            l.kind.as_str(),
            formula,
            l.starts_on,
            l.ends_on,
            l.seats,
            rub(l.unit_price),
            rub(l.amount)
        );
    }
    for d in &q.discounts {
        let _ = write!(
            t,
            "<tr><td></td><td colspan=4>Скидка / Discount: {}</td><td class=n>−{}</td></tr>",
            esc(&d.name),
            rub(d.amount)
        );
    }
    let _ = write!(
        t,
        "<tr><td colspan=5><b>Итого / Total</b></td><td class=n><b>{}</b></td></tr>\
         <tr><td colspan=5>{}</td><td class=n>{}</td></tr></table>",
        rub(q.total),
        esc(vat.label()),
        if vat == VatMode::Exempt {
            "—".to_string()
        } else {
            rub(vat.vat_included(q.total))
        }
    );
    t
}

pub fn invoice_html(buyer: &Account, invoice: &Invoice, q: &Quote) -> String {
    invoice_html_for(&Seller::default(), buyer, invoice, q)
}

pub fn invoice_html_for(seller: &Seller, buyer: &Account, invoice: &Invoice, q: &Quote) -> String {
    let title = format!(
        "Счёт-оферта № {} от {}",
        invoice.number_text, invoice.issued_on
    );
    let body = format!(
        "<h1>{}</h1><p>Invoice (offer) No. {} of {} · status: {}</p>{}\
         <p>Заказ / Order: {} · оплата / payment: {} · канал / channel: {} · дата начала (Д2) / start date: {}</p>{}\
         <p>Валюта / Currency: {}. Оплата означает акцепт оферты (3.2).</p>",
        esc(&title),
        esc(&invoice.number_text),
        invoice.issued_on,
        esc(&invoice.status),
        parties(seller, buyer),
        q.order_type,
        q.payment_terms.as_str(),
        q.channel.as_str(),
        q.start_date,
        lines_table(q, invoice.vat),
        esc(&q.currency),
    );
    page(&title, &body)
}

pub fn transfer_document_html(buyer: &Account, doc: &TransferDocument, q: &Quote) -> String {
    let seller = Seller::default();
    let name = if doc.kind == "upd" {
        "Универсальный передаточный документ (УПД)"
    } else {
        "Акт о предоставлении доступа"
    };
    let title = format!("{name} № {} от {}", doc.number_text, doc.issued_on);
    let objection = doc
        .objection
        .as_deref()
        .map(|o| format!("<p><b>Возражение / Objection:</b> {}</p>", esc(o)))
        .unwrap_or_default();
    let body = format!(
        "<h1>{}</h1>{}<p><b>Дата предоставления лицензии / Grant date:</b> {}</p>{}\
         <p>Сумма / Amount: {} RUB. Документ считается принятым, если до {} (5 рабочих дней, 3.2.6) не \
         поступит мотивированных возражений. Статус / status: {}</p>{}",
        esc(&title),
        parties(&seller, buyer),
        doc.grant_date,
        lines_table(q, VatMode::Exempt),
        rub(doc.amount),
        doc.accept_by,
        esc(&doc.status),
        objection
    );
    page(&title, &body)
}

pub fn corrective_invoice_html(
    buyer: &Account,
    invoice: &Invoice,
    c: &CorrectiveInvoice,
    q: &Quote,
) -> String {
    let seller = Seller::default();
    let title = format!(
        "Корректировочный счёт-фактура № {} от {}",
        c.number_text, c.issued_on
    );
    let vat = invoice.vat;
    let seats: u32 = q.seats().max(1);
    let unit = |m: Money| Money::round_half_up(m.amount() / rust_decimal::Decimal::from(seats));
    let row = |label: &str, f: &dyn Fn(Money) -> String| {
        format!(
            "<tr><td>{label}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td></tr>",
            f(c.before),
            f(c.after),
            f(c.difference)
        )
    };
    let net = |m: Money| m - vat.vat_included(m);
    let body = format!(
        "<h1>{}</h1><p>Corrective invoice No. {} of {} to invoice No. {} of {}</p>{}\
         <p>Услуга / Service: лицензия, тариф «{}», {} лиц. / seats. Основание / reason: {}</p>\
         <table><tr><th></th><th>До изменения / Before</th><th>После / After</th><th>Разница / Difference</th></tr>{}{}{}{}{}</table>\
         <p>{}</p>",
        esc(&title),
        esc(&c.number_text),
        c.issued_on,
        esc(&invoice.number_text),
        invoice.issued_on,
        parties(&seller, buyer),
        esc(q.tariff.as_str()),
        seats,
        esc(&c.reason),
        format_args!(
            "<tr><td>Количество / Quantity</td><td class=n>{seats}</td><td class=n>{seats}</td><td class=n>0</td></tr>"
        ),
        row(
            "Цена за единицу без налога / Unit price before tax",
            &|m| rub(unit(net(m)))
        ),
        row("Стоимость без налога / Cost before tax", &|m| rub(net(m))),
        row("Сумма налога / Tax", &|m| if vat == VatMode::Exempt {
            "без НДС".into()
        } else {
            rub(vat.vat_included(m))
        }),
        row("Стоимость с налогом / Cost with tax", &|m| rub(m)),
        esc(vat.label()),
    );
    page(&title, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_roubles() {
        assert_eq!(rub("15245.90".parse().unwrap()), "15\u{a0}245,90");
        assert_eq!(rub("186065.55".parse().unwrap()), "186\u{a0}065,55");
        assert_eq!(rub("5.00".parse().unwrap()), "5,00");
        assert_eq!(
            rub("-1234567.01".parse().unwrap()),
            "-1\u{a0}234\u{a0}567,01"
        );
    }

    #[test]
    fn escapes() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
