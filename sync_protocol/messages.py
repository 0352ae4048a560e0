"""User-facing error messages in the field users' languages.

Messages are keyed by stable error code; the gateway picks the language from
``Accept-Language`` (:func:`negotiate_language`) and renders :func:`message`. Messages
deliberately carry no record data: an out-of-scope record must not be revealed.
"""

from __future__ import annotations

from .entities import LANGUAGES

FALLBACK_LANGUAGE = "en"

_M: dict[str, tuple[str, str, str, str, str, str]] = {
    # code: (it, de, fr, es, pl, en)
    "malformed_payload": (
        "La richiesta non è leggibile.",
        "Die Anfrage ist nicht lesbar.",
        "La requête est illisible.",
        "La solicitud no es legible.",
        "Żądanie jest nieczytelne.",
        "The request could not be read.",
    ),
    "invalid_payload": (
        "La richiesta non è valida.",
        "Die Anfrage ist ungültig.",
        "La requête n'est pas valide.",
        "La solicitud no es válida.",
        "Żądanie jest nieprawidłowe.",
        "The request is not valid.",
    ),
    "payload_too_large": (
        "La richiesta è troppo grande.",
        "Die Anfrage ist zu groß.",
        "La requête est trop volumineuse.",
        "La solicitud es demasiado grande.",
        "Żądanie jest zbyt duże.",
        "The request is too large.",
    ),
    "unsupported_media_type": (
        "Formato non supportato.",
        "Format wird nicht unterstützt.",
        "Format non pris en charge.",
        "Formato no admitido.",
        "Nieobsługiwany format.",
        "Unsupported format.",
    ),
    "unsupported_protocol_version": (
        "Aggiorna l'app per sincronizzare.",
        "Bitte aktualisieren Sie die App, um zu synchronisieren.",
        "Mettez l'application à jour pour synchroniser.",
        "Actualice la aplicación para sincronizar.",
        "Zaktualizuj aplikację, aby synchronizować.",
        "Update the app to sync.",
    ),
    "schema_violation": (
        "I dati non corrispondono allo schema.",
        "Die Daten passen nicht zum Schema.",
        "Les données ne correspondent pas au schéma.",
        "Los datos no coinciden con el esquema.",
        "Dane nie pasują do schematu.",
        "The data does not match the schema.",
    ),
    "unknown_entity": (
        "Tipo di record sconosciuto.",
        "Unbekannter Datensatztyp.",
        "Type d'enregistrement inconnu.",
        "Tipo de registro desconocido.",
        "Nieznany typ rekordu.",
        "Unknown record type.",
    ),
    "unknown_field": (
        "Campo sconosciuto.",
        "Unbekanntes Feld.",
        "Champ inconnu.",
        "Campo desconocido.",
        "Nieznane pole.",
        "Unknown field.",
    ),
    "invalid_field_value": (
        "Valore non valido per un campo.",
        "Ungültiger Feldwert.",
        "Valeur de champ non valide.",
        "Valor de campo no válido.",
        "Nieprawidłowa wartość pola.",
        "A field value is not valid.",
    ),
    "invalid_record_id": (
        "Identificativo del record non valido.",
        "Ungültige Datensatz-ID.",
        "Identifiant d'enregistrement non valide.",
        "Identificador de registro no válido.",
        "Nieprawidłowy identyfikator rekordu.",
        "The record id is not valid.",
    ),
    "forbidden": (
        "Operazione non consentita.",
        "Vorgang nicht erlaubt.",
        "Opération non autorisée.",
        "Operación no permitida.",
        "Operacja niedozwolona.",
        "Operation not allowed.",
    ),
    "field_not_writable": (
        "Non puoi modificare questo campo.",
        "Sie dürfen dieses Feld nicht ändern.",
        "Vous ne pouvez pas modifier ce champ.",
        "No puede modificar este campo.",
        "Nie możesz zmienić tego pola.",
        "You may not change this field.",
    ),
    "operation_not_allowed": (
        "Il tuo profilo non consente questa operazione.",
        "Ihr Profil erlaubt diesen Vorgang nicht.",
        "Votre profil n'autorise pas cette opération.",
        "Su perfil no permite esta operación.",
        "Twój profil nie pozwala na tę operację.",
        "Your profile does not allow this.",
    ),
    "not_found": (
        "Non trovato.",
        "Nicht gefunden.",
        "Introuvable.",
        "No encontrado.",
        "Nie znaleziono.",
        "Not found.",
    ),
    "record_error": (
        "Il record non può essere modificato.",
        "Der Datensatz kann nicht geändert werden.",
        "L'enregistrement ne peut pas être modifié.",
        "El registro no se puede modificar.",
        "Nie można zmienić rekordu.",
        "The record cannot be changed.",
    ),
    "record_deleted": (
        "Il record è stato eliminato.",
        "Der Datensatz wurde gelöscht.",
        "L'enregistrement a été supprimé.",
        "El registro ha sido eliminado.",
        "Rekord został usunięty.",
        "The record has been deleted.",
    ),
    "record_not_found": (
        "Il record non esiste.",
        "Der Datensatz existiert nicht.",
        "L'enregistrement n'existe pas.",
        "El registro no existe.",
        "Rekord nie istnieje.",
        "The record does not exist.",
    ),
    "record_exists": (
        "Il record esiste già.",
        "Der Datensatz existiert bereits.",
        "L'enregistrement existe déjà.",
        "El registro ya existe.",
        "Rekord już istnieje.",
        "The record already exists.",
    ),
    "invalid_base_version": (
        "La copia locale non è coerente; risincronizza.",
        "Die lokale Kopie ist inkonsistent; bitte neu synchronisieren.",
        "La copie locale est incohérente ; resynchronisez.",
        "La copia local es incoherente; vuelva a sincronizar.",
        "Lokalna kopia jest niespójna; zsynchronizuj ponownie.",
        "The local copy is inconsistent; resync.",
    ),
    "invalid_clock": (
        "Orologio del dispositivo non valido.",
        "Ungültige Geräteuhr.",
        "Horloge de l'appareil non valide.",
        "Reloj del dispositivo no válido.",
        "Nieprawidłowy zegar urządzenia.",
        "The device clock value is not valid.",
    ),
    "invalid_checkpoint": (
        "Punto di sincronizzazione non valido.",
        "Ungültiger Synchronisationspunkt.",
        "Point de synchronisation non valide.",
        "Punto de sincronización no válido.",
        "Nieprawidłowy punkt synchronizacji.",
        "The sync checkpoint is not valid.",
    ),
    "checkpoint_too_old": (
        "Ultima sincronizzazione troppo vecchia: serve una risincronizzazione completa.",
        "Letzte Synchronisation zu alt: vollständige Neusynchronisation nötig.",
        "Dernière synchronisation trop ancienne : resynchronisation complète requise.",
        "Última sincronización demasiado antigua: se requiere una resincronización completa.",
        "Ostatnia synchronizacja jest zbyt stara: wymagana pełna synchronizacja.",
        "Last sync is too old: a full resync is needed.",
    ),
    "invalid_sync_rules": (
        "Configurazione delle regole non valida.",
        "Ungültige Regelkonfiguration.",
        "Configuration des règles non valide.",
        "Configuración de reglas no válida.",
        "Nieprawidłowa konfiguracja reguł.",
        "The sync rules are not valid.",
    ),
    "too_many_channels": (
        "Troppi ambiti di visibilità per l'utente.",
        "Zu viele Sichtbereiche für den Benutzer.",
        "Trop de périmètres pour l'utilisateur.",
        "Demasiados ámbitos para el usuario.",
        "Zbyt wiele zakresów dla użytkownika.",
        "Too many channels for this user.",
    ),
    "unauthorized": (
        "Accesso richiesto.",
        "Anmeldung erforderlich.",
        "Authentification requise.",
        "Se requiere autenticación.",
        "Wymagane uwierzytelnienie.",
        "Authentication required.",
    ),
    "token_expired": (
        "Sessione scaduta: accedi di nuovo.",
        "Sitzung abgelaufen: bitte erneut anmelden.",
        "Session expirée : reconnectez-vous.",
        "Sesión caducada: inicie sesión de nuevo.",
        "Sesja wygasła: zaloguj się ponownie.",
        "Session expired: sign in again.",
    ),
    "device_revoked": (
        "Questo dispositivo è stato revocato.",
        "Dieses Gerät wurde gesperrt.",
        "Cet appareil a été révoqué.",
        "Este dispositivo ha sido revocado.",
        "To urządzenie zostało odwołane.",
        "This device has been revoked.",
    ),
    "device_not_registered": (
        "Dispositivo non registrato.",
        "Gerät nicht registriert.",
        "Appareil non enregistré.",
        "Dispositivo no registrado.",
        "Urządzenie niezarejestrowane.",
        "Device not registered.",
    ),
    "method_not_allowed": (
        "Metodo non consentito.",
        "Methode nicht erlaubt.",
        "Méthode non autorisée.",
        "Método no permitido.",
        "Metoda niedozwolona.",
        "Method not allowed.",
    ),
    "not_acceptable": (
        "Formato di risposta non disponibile.",
        "Antwortformat nicht verfügbar.",
        "Format de réponse indisponible.",
        "Formato de respuesta no disponible.",
        "Format odpowiedzi niedostępny.",
        "Response format not available.",
    ),
    "rate_limited": (
        "Troppe richieste: riprova più tardi.",
        "Zu viele Anfragen: später erneut versuchen.",
        "Trop de requêtes : réessayez plus tard.",
        "Demasiadas solicitudes: reintente más tarde.",
        "Zbyt wiele żądań: spróbuj później.",
        "Too many requests: try again later.",
    ),
    "service_unavailable": (
        "Servizio momentaneamente non disponibile.",
        "Dienst vorübergehend nicht verfügbar.",
        "Service temporairement indisponible.",
        "Servicio no disponible temporalmente.",
        "Usługa chwilowo niedostępna.",
        "Service temporarily unavailable.",
    ),
    "internal_error": (
        "Errore interno.",
        "Interner Fehler.",
        "Erreur interne.",
        "Error interno.",
        "Błąd wewnętrzny.",
        "Internal error.",
    ),
    "protocol_error": (
        "Errore di sincronizzazione.",
        "Synchronisationsfehler.",
        "Erreur de synchronisation.",
        "Error de sincronización.",
        "Błąd synchronizacji.",
        "Sync error.",
    ),
}

MESSAGES: dict[str, dict[str, str]] = {
    code: dict(zip(LANGUAGES, texts, strict=True)) for code, texts in _M.items()
}


def message(code: str, language: str) -> str:
    """The message for ``code`` in ``language`` (English, then a generic text, as fallback)."""
    texts = MESSAGES.get(code) or MESSAGES["protocol_error"]
    return texts.get(language) or texts[FALLBACK_LANGUAGE]


def negotiate_language(accept_language: str | None) -> str:
    """Pick the best supported language from an ``Accept-Language`` header."""
    if not accept_language:
        return FALLBACK_LANGUAGE
    best = (-1.0, FALLBACK_LANGUAGE)
    for i, part in enumerate(accept_language.split(",")[:20]):
        bits = part.strip().split(";")
        tag = bits[0].strip().lower().split("-", 1)[0]
        q = 1.0
        for b in bits[1:]:
            k, _, v = b.strip().partition("=")
            if k == "q":
                try:
                    q = float(v)
                except ValueError:
                    q = 0.0
        # Earlier entries win ties, as the header lists preferences in order.
        score = q - i * 1e-6
        if tag in LANGUAGES and q > 0 and score > best[0]:
            best = (score, tag)
    return best[1]
