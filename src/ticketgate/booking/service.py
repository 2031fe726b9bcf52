"""Booking: holding seats with the token from enter, showing reservations to their owners,
paying for them, and confirming them when the payment service reports a completed payment.

The duties no backend can do for the gateway live here:
- the reservation token from enter (bound to user and event) is claimed before any seat is
  held, so only admitted users reach the inventory. The claim is a lease: attempts with one
  token run one at a time, only a successful hold uses the token up, and a refused or failed
  attempt leaves it usable until it expires, so a fan whose seat was just taken picks another
  instead of queueing again;
- a reservation is shown to its owner only (anyone else is told it does not exist, so ids
  cannot be probed), and only its owner may pay for it, in full, while it is held;
- a payment outcome is checked against the payment service's own record, and the confirm it
  triggers carries a key derived from the payment intent, so a replayed outcome confirms once.

Token refusals say what to do: TokenForbidden (a forged token, another user's or another
event's: not theirs to use), TokenGone (expired or already used: enter again), TokenBusy
(another attempt with it is running: retry in a second).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

from ticketgate.booking.errors import (
    BackendRefusal,
    HoldExpired,
    InvalidBooking,
    MissingEventId,
    MissingToken,
    NotPayable,
    PaymentNotApproved,
    ReservationNotFound,
    TokenBusy,
    TokenForbidden,
    TokenGone,
)
from ticketgate.booking.model import PAYABLE, PaymentOutcome, payment_status, reservation_status
from ticketgate.booking.ports import CallContext, Payments, Reservations
from ticketgate.proto.payment.v1 import payment_pb2
from ticketgate.proto.reservation.v1 import reservation_pb2
from ticketgate.waitingroom.model import ClaimOutcome, QueueUnavailable
from ticketgate.waitingroom.service import ReservationClaim, WaitingRoom
from ticketgate.waitingroom.tokens import InvalidToken

log = logging.getLogger("ticketgate.booking")
# A reservation attempt's lease on its token outlives the backend call it guards (the call's
# deadline plus this margin); a gateway that dies mid-call frees the token after it.
LEASE_MARGIN_MS = 5_000
# How soon a caller refused with TokenBusy may try again.
BUSY_RETRY_SEC = 1.0


def _unkeyed(context: CallContext) -> CallContext:
    """Reads carry no idempotency key: only the write they belong to is deduplicated."""
    return dataclasses.replace(context, idempotency_key="")


class BookingService:
    def __init__(
        self,
        room: WaitingRoom,
        reservations: Reservations,
        payments: Payments,
        *,
        hold_timeout_ms: int,
        webhook_url: str,
    ) -> None:
        """`hold_timeout_ms` is the reservation backend's deadline for a hold (the token's
        lease outlives it); `webhook_url` is where the payment service reports outcomes."""
        self.room = room
        self.reservations = reservations
        self.payments = payments
        self.webhook_url = webhook_url
        self.lease_ms = hold_timeout_ms + LEASE_MARGIN_MS

    # ----------------------------------------------------------------------- holding seats

    async def reserve(
        self,
        context: CallContext,
        user_id: str,
        *,
        event_id: str,
        seat_ids: Sequence[str],
        quantity: int,
        token: str,
    ) -> reservation_pb2.CreateReservationResponse:
        """Hold `seat_ids` (or `quantity` seats; 0 means as many as seat_ids) for `user_id`,
        paid for with the reservation token from enter."""
        if not event_id:
            raise MissingEventId("event_id is required")
        WaitingRoom.check_event_id(event_id)
        if not token:
            raise MissingToken("reservation_token (from queue/enter) is required")
        if len(set(seat_ids)) != len(seat_ids):
            raise InvalidBooking("seat_ids must not repeat a seat")
        quantity = quantity or len(seat_ids)
        if seat_ids and quantity != len(seat_ids):
            raise InvalidBooking("quantity must equal the number of seat_ids")
        if quantity < 1:
            raise InvalidBooking("give seat_ids or a quantity of at least 1")
        # Fail fast while the backend is known down, before the token is even claimed.
        self.reservations.check_available()
        claim = await self._claim_token(token, user_id, event_id)
        used = False
        try:
            created = await self.reservations.create(
                context,
                event_id=event_id,
                seat_ids=seat_ids,
                quantity=quantity,
                user_id=user_id,
                reservation_token=token,
            )
            used = True
        finally:
            # Only a hold uses the token up: after a refusal or failure it is still theirs.
            await self._settle(claim, used)
        return created

    async def _claim_token(self, token: str, user_id: str, event_id: str) -> ReservationClaim:
        try:
            claims = self.room.signer.verify_reservation(token)
        except InvalidToken:
            raise TokenForbidden("reservation token is not valid") from None
        if claims.user_id != user_id:
            raise TokenForbidden("reservation token was issued to another user")
        if claims.event_id != event_id:
            raise TokenForbidden("reservation token was issued for another event")
        claim = await self.room.claim_reservation(token, user_id, event_id, self.lease_ms)
        if claim.outcome is ClaimOutcome.BUSY:
            raise TokenBusy(
                "another reservation with this token is in progress; retry in a second",
                retry_after_sec=BUSY_RETRY_SEC,
            )
        if claim.outcome is not ClaimOutcome.CLAIMED:
            raise TokenGone("reservation token has expired or was already used")
        return claim

    async def _settle(self, claim: ReservationClaim, used: bool) -> None:
        """Settle the claim; a store outage here must not turn a hold into an error (an
        unsettled lease lapses by itself, and the reservation service refuses a second hold
        with the same token)."""
        try:
            await self.room.settle_reservation(claim, used)
        except QueueUnavailable as exc:
            log.warning("could not settle reservation token of %s: %s", claim.event_id, exc)

    # ----------------------------------------------------------------------- reservations

    async def reservation(
        self, context: CallContext, user_id: str, reservation_id: str
    ) -> reservation_pb2.GetReservationResponse:
        """The reservation if `user_id` owns it; ReservationNotFound otherwise, never a
        refusal that would tell the id exists."""
        try:
            found = await self.reservations.get(
                _unkeyed(context), reservation_id=reservation_id, user_id=user_id
            )
        except BackendRefusal as exc:
            if exc.code == "FORBIDDEN":
                raise ReservationNotFound("reservation not found") from None
            raise
        if found.user_id != user_id:
            raise ReservationNotFound("reservation not found")
        return found

    async def confirm(
        self, context: CallContext, user_id: str, reservation_id: str, payment_intent_id: str
    ) -> reservation_pb2.ConfirmReservationResponse:
        """Confirm after payment; without an intent the reservation service checks the one
        it knows. Ownership and payment are the reservation service's checks here."""
        return await self.reservations.confirm(
            context,
            reservation_id=reservation_id,
            user_id=user_id,
            payment_intent_id=payment_intent_id,
        )

    async def cancel(
        self, context: CallContext, user_id: str, reservation_id: str, reason: str
    ) -> reservation_pb2.CancelReservationResponse:
        return await self.reservations.cancel(
            context, reservation_id=reservation_id, user_id=user_id, reason=reason
        )

    # ----------------------------------------------------------------------- payment

    async def start_payment(
        self,
        context: CallContext,
        user_id: str,
        *,
        reservation_id: str,
        amount: int,
        currency: str,
        scenario: str,
    ) -> payment_pb2.CreatePaymentIntentResponse:
        """A payment intent for a reservation `user_id` holds, for exactly its total.

        The payment service does not know reservations: ownership, state and amount are
        checked here, so nobody pays for someone else's seats or pays 1 won for them."""
        self.payments.check_available()
        found = await self.reservation(context, user_id, reservation_id)
        if found.status == reservation_pb2.RESERVATION_STATUS_EXPIRED:
            raise HoldExpired("the hold has expired")
        if found.status not in PAYABLE:
            raise NotPayable(f"the reservation is {reservation_status(found.status)}, not payable")
        total = found.total_amount
        if found.HasField("total_amount") and (
            amount != total.amount or currency != total.currency
        ):
            raise InvalidBooking(
                f"amount must equal the reservation's total ({total.amount} {total.currency})"
            )
        return await self.payments.create_intent(
            context,
            reservation_id=reservation_id,
            amount=amount,
            currency=currency,
            user_id=user_id,
            scenario=scenario,
            webhook_url=self.webhook_url,
        )

    async def apply_payment_outcome(
        self, context: CallContext, outcome: PaymentOutcome
    ) -> reservation_pb2.ConfirmReservationResponse | None:
        """Confirm the reservation a completed payment paid for; None when the outcome changes
        nothing (a failed payment: the hold runs out and the seats return).

        The outcome is authenticated by whoever hands it in; the payment service's record is
        still the authority on what was paid, by whom, for which reservation."""
        if outcome.status != "COMPLETED":
            return None
        payment = await self.payments.status(
            _unkeyed(context), payment_intent_id=outcome.payment_intent_id
        )
        if payment.status != payment_pb2.PAYMENT_STATUS_COMPLETED:
            raise PaymentNotApproved(
                f"payment {outcome.payment_intent_id} is {payment_status(payment.status)}"
            )
        if payment.reservation_id != outcome.reservation_id:
            raise InvalidBooking("webhook reservation_id does not match the payment")
        # One key per payment intent: every replay, from any gateway pod, is one confirm.
        keyed = dataclasses.replace(
            context, idempotency_key=f"payment-webhook:{outcome.payment_intent_id}"
        )
        return await self.reservations.confirm(
            keyed,
            reservation_id=payment.reservation_id,
            user_id=payment.user_id,
            payment_intent_id=outcome.payment_intent_id,
        )
