// Package attribution is the worker: it consumes clicks and merchant events
// from JetStream into its own bbolt store, attributes conversions, books
// commissions in an append-only ledger, answers reads and the edge's
// conversion API over NATS (sink.ServeAPI, sink.ServeBackend) and publishes
// the catalog that edges serve from.
//
// # The store is a view of the streams
//
// Replaying the streams into an empty store (new durables, same catalog)
// rebuilds every conversion, customer, ledger entry and event result byte
// for byte (clicks differ only in ReceivedAt); replaying them into a full
// store changes nothing. Everything that follows serves that promise:
//
//   - One writer per partition. A batch of events is applied in stream order
//     in one transaction, then acked; the event consumer allows one batch in
//     flight, so a failed or crashed batch holds every later event back.
//   - Nothing reads a clock: times are the events' own (Unix ms stamped by
//     the edge). Automatic approval after a campaign's hold is itself an
//     event the worker publishes to the stream (dialect admin, id
//     sink.EventID(merchant, status, conv id + ":auto-approve")), and only
//     once its event consumer has caught up, so that a replaying worker does
//     not approve what a later event rejects.
//   - Ids are pure functions (ConversionID, ReferralCode) and ledger
//     sequences follow from the order of the events.
//   - An event id seen before changes nothing, whatever its outcome was, and
//     keeps its original result. A conversion is identified by (merchant,
//     unique id): another event with the same unique id answers "duplicate"
//     with the original. A refund repeating an external refund id refunds
//     once. A retry after a rejection needs a new event id.
//   - Clicks travel on their own stream: when a conversion names a click id
//     that verifies but is not stored yet, the batch waits (Worker.ClickWait)
//     for the click consumer to catch up with the click stream as it is at
//     that moment. A click that never arrives leaves the conversion flagged
//     unknown_click.
//
// # Attribution
//
// Precedence: a valid click id in the request > the click id from the
// first-party cookie > a coupon code owned by a partner (case-insensitive) >
// the customer's earlier attribution > the partner key (a Partnac
// partnership code may also be one of the partner's coupon codes), email or
// id > unattributed (recorded, earning nothing). A click attributes only if
// its id verifies with the cluster secret (else forged_click), the merchant
// has it stored (else unknown_click: another merchant's click is unknown
// too), it is not a bot's (bot_click) nor an orphan's (orphan_click), its
// partner and campaign are still the merchant's, and the conversion comes at
// most the campaign window after it: exactly at the end is inside, one
// millisecond later is outside (outside_window). A conversion stamped before
// its click (clock skew between edges) counts as inside. A failed step falls
// through to the next, keeping its flag. A click beating a coupon of another
// partner is flagged coupon_conflict; a conversion sooner than the campaign's
// minimum after its click is flagged suspect_fast and still attributes;
// pixel conversions are flagged client_reported.
//
// Last click is the default. A first_click campaign gives the customer's
// earlier attribution precedence over a newer click and, without one,
// follows the click's PrevClickID (the id the campaign cookie held) back to
// the earliest click that is still valid in the same campaign.
//
// The campaign is the click's; else the customer's (for an attribution by
// customer); else the event's campaign id when it is the merchant's (else
// flagged unknown_campaign); else the campaign of the partner's first link;
// else the merchant's first campaign.
//
// A customer is the merchant's customer id (Partnac metadata.customer_id,
// Partnero customer key), else the hash of the customer's email (Affilync's
// cross-device attribution, key "email:<hash>"). The first partner a
// customer is attributed to stays its partner (lifetime attribution); a
// newer click still wins a single conversion under last click.
//
// # Commissions
//
// The campaign's most specific matching rule pays (product id, then product
// type, then type, then the catch-all; ties to the first in catalog order):
// money.Percent of the amount, rounded once half away from zero, plus the
// flat amount. Every ledger entry is rounded once on its own: reversals of
// partial refunds round the cumulative refunded share (money.MulDiv of the
// earned commission by refunded/amount) and book the difference, so pieces
// add up to exactly one full refund and never exceed what is left. A lead
// earns once per customer (repeat_lead), without a customer every lead
// earns. A subscription payment earns if it is the customer's first
// attributed one, or within RecurringMonths calendar months (UTC, end
// inclusive) of it, or for ever with RecurringLifetime (else
// recurring_expired). A conversion in another currency than its campaign's
// is recorded, attributed and earns nothing (currency_mismatch); an empty
// currency means the campaign's.
//
// # Ledger and lifecycle
//
// Entries are append-only per account (partner id, or CustomerAccount(key)
// for refer-a-friend credits): commission, reversal (refund or rejection
// before payment), adjustment (recalculation), payout (paid: moves the
// commission out of the balance), clawback (refund after payment with
// reverse_paid_earnings: booked against future earnings), credit. A balance
// is the sum of the account's entries; a conversion's commission is the sum
// of its entries but payouts. A refund after payment without
// reverse_paid_earnings books nothing.
//
// Statuses go pending → approved | rejected and approved → paid; anything
// else is rejected with invalid_transition, and asking for the status a
// conversion already has is ignored. Rejecting reverses what is left of the
// commission. An update may change the amount (never below what was
// refunded) and merges metadata objects key by key; with recalculation it
// books the difference between what the new amount earns, less its refunded
// share, and the current commission. Rejected conversions and those barred
// from earning are never recalculated upwards.
//
// # Partnero customers
//
// A customer event creates or updates the merchant's customer. A new
// customer is recorded only with a valid partner (key, email or id) or an
// existing referring customer; otherwise the event is accepted and ignored,
// as Partnero documents. A transaction (a conversion of dialect partnero) of
// an unknown customer is ignored unless it asks to create the customer with a
// valid partner. Credits add to a customer's balance in one currency.
package attribution
