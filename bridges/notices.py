"""Everything the Relay says to a user by itself, in one place (short, plain, honest)."""

from bridges.catalogue import Strings


class Notices(Strings, key="notices"):
    """Everything the Relay itself says to a user, in one place."""

    handoff_requested = "I've asked a human moderator to join. They'll see this conversation and reply here."
    handoff_pending = "A moderator has been asked to join; your message is saved and they will see it."
    handoff_already_open = "A moderator has already been asked to join this conversation."
    no_moderators = (
        "No human moderators are set up for this assistant, so I can't pass you to a person. "
        "The assistant is still here to help."
    )
    handoff_open_elsewhere = (
        "You already have an open request for a moderator. They will answer you where you asked."
    )
    handoff_too_often = (
        "Several requests for a moderator were opened for you in the last hour, so I can't open another "
        "one right now. Please try again later; the assistant is still here."
    )
    handoff_expired = "No moderator was available in time, so the assistant is back. Your message is below."
    reset = "Started a new conversation. What can I help you with?"
    session_ended = "This conversation has ended. Send a message any time to start a new one."
    delivery_failed = "Sorry, I couldn't post the whole reply here. Please try again."
    slow_down = (
        "You're sending messages faster than I can answer. Please wait {seconds} seconds, then send it again."
    )
    db_unavailable = (
        "I can't reach my database right now, so I couldn't take your message. "
        "Please send it again in a minute."
    )
    input_shortened = "Your message was very long, so the assistant only read the first {limit} characters."
    reply_cut = (
        "The assistant's reply was too long, so it was cut off here. You can ask it to go on, or to be brief."
    )
    interrupted = (
        "Sorry, I was restarted while answering “{asked}”. Your message is saved; please send it again."
    )
    press_not_answered = (
        "Sorry, I was restarted before I could act on your choice “{label}”. Please choose again or send a "
        "message."
    )
    file_lost = (
        "Sorry, I was restarted before I could pass on {files} from your message. Please send it again."
    )
    files_lost = (
        "Sorry, I was restarted before I could pass on {files} from your message. Please send them again."
    )
