"""DfE code lists used as public domains. Public reference data, not personal data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

REGIONS: dict[str, str] = {
    "E12000001": "North East",
    "E12000002": "North West",
    "E12000003": "Yorkshire and The Humber",
    "E12000004": "East Midlands",
    "E12000005": "West Midlands",
    "E12000006": "East of England",
    "E12000007": "London",
    "E12000008": "South East",
    "E12000009": "South West",
}

_NE, _NW, _YH, _EM, _WM, _EE, _LN, _SE, _SW = REGIONS

# The 153 English local authorities with their 3-digit DfE codes (as from April 2023).
LOCAL_AUTHORITIES: dict[str, tuple[str, str]] = {
    "390": ("Gateshead", _NE), "391": ("Newcastle upon Tyne", _NE),
    "392": ("North Tyneside", _NE), "393": ("South Tyneside", _NE), "394": ("Sunderland", _NE),
    "805": ("Hartlepool", _NE), "806": ("Middlesbrough", _NE),
    "807": ("Redcar and Cleveland", _NE), "808": ("Stockton-on-Tees", _NE),
    "840": ("County Durham", _NE), "841": ("Darlington", _NE), "929": ("Northumberland", _NE),
    "340": ("Knowsley", _NW), "341": ("Liverpool", _NW), "342": ("St. Helens", _NW),
    "343": ("Sefton", _NW), "344": ("Wirral", _NW), "350": ("Bolton", _NW), "351": ("Bury", _NW),
    "352": ("Manchester", _NW), "353": ("Oldham", _NW), "354": ("Rochdale", _NW),
    "355": ("Salford", _NW), "356": ("Stockport", _NW), "357": ("Tameside", _NW),
    "358": ("Trafford", _NW), "359": ("Wigan", _NW), "876": ("Halton", _NW),
    "877": ("Warrington", _NW), "888": ("Lancashire", _NW),
    "889": ("Blackburn with Darwen", _NW), "890": ("Blackpool", _NW),
    "895": ("Cheshire East", _NW), "896": ("Cheshire West and Chester", _NW),
    "942": ("Cumberland", _NW), "943": ("Westmorland and Furness", _NW),
    "370": ("Barnsley", _YH), "371": ("Doncaster", _YH), "372": ("Rotherham", _YH),
    "373": ("Sheffield", _YH), "380": ("Bradford", _YH), "381": ("Calderdale", _YH),
    "382": ("Kirklees", _YH), "383": ("Leeds", _YH), "384": ("Wakefield", _YH),
    "810": ("Kingston upon Hull, City of", _YH), "811": ("East Riding of Yorkshire", _YH),
    "812": ("North East Lincolnshire", _YH), "813": ("North Lincolnshire", _YH),
    "815": ("North Yorkshire", _YH), "816": ("York", _YH),
    "830": ("Derbyshire", _EM), "831": ("Derby", _EM), "855": ("Leicestershire", _EM),
    "856": ("Leicester", _EM), "857": ("Rutland", _EM), "891": ("Nottinghamshire", _EM),
    "892": ("Nottingham", _EM), "925": ("Lincolnshire", _EM),
    "940": ("North Northamptonshire", _EM), "941": ("West Northamptonshire", _EM),
    "330": ("Birmingham", _WM), "331": ("Coventry", _WM), "332": ("Dudley", _WM),
    "333": ("Sandwell", _WM), "334": ("Solihull", _WM), "335": ("Walsall", _WM),
    "336": ("Wolverhampton", _WM), "860": ("Staffordshire", _WM),
    "861": ("Stoke-on-Trent", _WM), "884": ("Herefordshire, County of", _WM),
    "885": ("Worcestershire", _WM), "893": ("Shropshire", _WM),
    "894": ("Telford and Wrekin", _WM), "937": ("Warwickshire", _WM),
    "821": ("Luton", _EE), "822": ("Bedford", _EE), "823": ("Central Bedfordshire", _EE),
    "873": ("Cambridgeshire", _EE), "874": ("Peterborough", _EE), "881": ("Essex", _EE),
    "882": ("Southend-on-Sea", _EE), "883": ("Thurrock", _EE), "919": ("Hertfordshire", _EE),
    "926": ("Norfolk", _EE), "935": ("Suffolk", _EE),
    "201": ("City of London", _LN), "202": ("Camden", _LN), "203": ("Greenwich", _LN),
    "204": ("Hackney", _LN), "205": ("Hammersmith and Fulham", _LN), "206": ("Islington", _LN),
    "207": ("Kensington and Chelsea", _LN), "208": ("Lambeth", _LN), "209": ("Lewisham", _LN),
    "210": ("Southwark", _LN), "211": ("Tower Hamlets", _LN), "212": ("Wandsworth", _LN),
    "213": ("Westminster", _LN), "301": ("Barking and Dagenham", _LN), "302": ("Barnet", _LN),
    "303": ("Bexley", _LN), "304": ("Brent", _LN), "305": ("Bromley", _LN),
    "306": ("Croydon", _LN), "307": ("Ealing", _LN), "308": ("Enfield", _LN),
    "309": ("Haringey", _LN), "310": ("Harrow", _LN), "311": ("Havering", _LN),
    "312": ("Hillingdon", _LN), "313": ("Hounslow", _LN), "314": ("Kingston upon Thames", _LN),
    "315": ("Merton", _LN), "316": ("Newham", _LN), "317": ("Redbridge", _LN),
    "318": ("Richmond upon Thames", _LN), "319": ("Sutton", _LN), "320": ("Waltham Forest", _LN),
    "825": ("Buckinghamshire", _SE), "826": ("Milton Keynes", _SE),
    "845": ("East Sussex", _SE), "846": ("Brighton and Hove", _SE), "850": ("Hampshire", _SE),
    "851": ("Portsmouth", _SE), "852": ("Southampton", _SE), "867": ("Bracknell Forest", _SE),
    "868": ("Windsor and Maidenhead", _SE), "869": ("West Berkshire", _SE),
    "870": ("Reading", _SE), "871": ("Slough", _SE), "872": ("Wokingham", _SE),
    "886": ("Kent", _SE), "887": ("Medway", _SE), "921": ("Isle of Wight", _SE),
    "931": ("Oxfordshire", _SE), "936": ("Surrey", _SE), "938": ("West Sussex", _SE),
    "420": ("Isles of Scilly", _SW), "800": ("Bath and North East Somerset", _SW),
    "801": ("Bristol, City of", _SW), "802": ("North Somerset", _SW),
    "803": ("South Gloucestershire", _SW), "838": ("Dorset", _SW),
    "839": ("Bournemouth, Christchurch and Poole", _SW), "865": ("Wiltshire", _SW),
    "866": ("Swindon", _SW), "878": ("Devon", _SW), "879": ("Plymouth", _SW),
    "880": ("Torbay", _SW), "908": ("Cornwall", _SW), "916": ("Gloucestershire", _SW),
    "933": ("Somerset", _SW),
}  # fmt: skip

LA_CODES: tuple[str, ...] = tuple(sorted(LOCAL_AUTHORITIES))
REGION_NAMES: tuple[str, ...] = tuple(REGIONS.values())

# DfE ethnicity: minor (extended) codes and the major group each belongs to.
ETHNICITY_MINOR_TO_MAJOR: dict[str, str] = {
    "WBRI": "WHIT", "WIRI": "WHIT", "WIRT": "WHIT", "WOTH": "WHIT", "WROM": "WHIT",
    "MWBC": "MIXD", "MWBA": "MIXD", "MWAS": "MIXD", "MOTH": "MIXD",
    "AIND": "ASIA", "APKN": "ASIA", "ABAN": "ASIA", "AOTH": "ASIA",
    "BCRB": "BLAC", "BAFR": "BLAC", "BOTH": "BLAC",
    "CHNE": "CHNE",
    "OOTH": "AOEG",
    "REFU": "UNCL", "NOBT": "UNCL",
}  # fmt: skip
ETHNICITY_MINOR: tuple[str, ...] = tuple(ETHNICITY_MINOR_TO_MAJOR)
ETHNICITY_MAJOR: tuple[str, ...] = ("WHIT", "MIXD", "ASIA", "BLAC", "CHNE", "AOEG", "UNCL")

# English / other than English / unclassified
LANGUAGE_GROUPS: tuple[str, ...] = ("ENG", "OTH", "UNC")
SEX: tuple[str, ...] = ("F", "M")
PHASES: tuple[str, ...] = ("primary", "secondary", "special")
SCHOOL_TYPES: tuple[str, ...] = (
    "community", "voluntary_aided", "voluntary_controlled", "foundation",
    "academy_converter", "academy_sponsor_led", "free_school", "special",
)  # fmt: skip
NC_YEARS: tuple[int, ...] = tuple(range(0, 12))  # 0 = Reception, 1..11 = Years 1-11
SEN_PROVISION: tuple[str, ...] = ("N", "K", "E")  # none / SEN support / EHC plan
SEN_PRIMARY_NEED: tuple[str, ...] = (
    "SPLD", "MLD", "SLD", "PMLD", "SEMH", "SLCN", "HI", "VI", "MSI", "PD", "ASD", "OTH", "NSA",
)  # fmt: skip
WRITING_TA: tuple[str, ...] = ("GDS", "EXS", "WTS", "PKF", "BLW")
EXCLUSION_CATEGORIES: tuple[str, ...] = ("suspension", "permanent")
EXCLUSION_REASONS: tuple[str, ...] = (
    "PP",  # physical assault against a pupil
    "PA",  # physical assault against an adult
    "VP",  # verbal abuse or threatening behaviour against a pupil
    "VA",  # verbal abuse or threatening behaviour against an adult
    "BU",  # bullying
    "RA",  # racist abuse
    "LG",  # abuse against sexual orientation or gender identity
    "DS",  # abuse relating to disability
    "SM",  # sexual misconduct
    "DA",  # drug and alcohol related
    "DM",  # damage
    "TH",  # theft
    "PD",  # persistent disruptive behaviour
    "MT",  # inappropriate use of social media or online technology
    "WT",  # wilful and repeated transgression of protective measures
    "OT",  # other
)
# Collected by DfE only in the 2016/17 and 2017/18 censuses (academic years 2017, 2018).
NATIONALITY_YEARS: tuple[int, ...] = (2017, 2018)
NATIONALITIES: tuple[str, ...] = (
    "GBR", "POL", "ROU", "IND", "PAK", "NGA", "LTU", "IRL", "ITA", "PRT",
    "BGR", "ESP", "SOM", "BGD", "FRA", "DEU", "CHN", "USA", "OTH", "NOT",
)  # fmt: skip
COUNTRIES_OF_BIRTH: tuple[str, ...] = NATIONALITIES
# Academic years a dataset may contain; the public domain of academic_year.
FIRST_YEAR, LAST_YEAR = 2006, 2025
ACADEMIC_YEARS: tuple[int, ...] = tuple(range(FIRST_YEAR, LAST_YEAR + 1))

# What each code means, as DfE's guides describe it (public reference data): the catalogue
# shows these beside the codes. A code list not here is self-describing.
_SEN_PROVISION_LABELS = {
    "N": "No special educational need", "K": "SEN support",
    "E": "Education, health and care plan",
}  # fmt: skip
_SEN_NEED_LABELS = {
    "SPLD": "Specific learning difficulty", "MLD": "Moderate learning difficulty",
    "SLD": "Severe learning difficulty", "PMLD": "Profound and multiple learning difficulty",
    "SEMH": "Social, emotional and mental health",
    "SLCN": "Speech, language and communication needs", "HI": "Hearing impairment",
    "VI": "Vision impairment", "MSI": "Multi-sensory impairment", "PD": "Physical disability",
    "ASD": "Autistic spectrum disorder", "OTH": "Other difficulty or disability",
    "NSA": "SEN support but no specialist assessment of type of need",
}  # fmt: skip
_WRITING_TA_LABELS = {
    "GDS": "Working at greater depth within the expected standard",
    "EXS": "Working at the expected standard", "WTS": "Working towards the expected standard",
    "PKF": "Pre-key stage: foundations for the expected standard",
    "BLW": "Below the pre-key stage standards",
}  # fmt: skip
_EXCLUSION_REASON_LABELS = {
    "PP": "Physical assault against a pupil", "PA": "Physical assault against an adult",
    "VP": "Verbal abuse or threatening behaviour against a pupil",
    "VA": "Verbal abuse or threatening behaviour against an adult", "BU": "Bullying",
    "RA": "Racist abuse", "LG": "Abuse against sexual orientation or gender identity",
    "DS": "Abuse relating to disability", "SM": "Sexual misconduct",
    "DA": "Drug and alcohol related", "DM": "Damage", "TH": "Theft",
    "PD": "Persistent disruptive behaviour",
    "MT": "Inappropriate use of social media or online technology",
    "WT": "Wilful and repeated transgression of protective measures", "OT": "Other",
}  # fmt: skip
_ETHNICITY_MINOR_LABELS = {
    "WBRI": "White - British", "WIRI": "White - Irish",
    "WIRT": "Traveller of Irish heritage", "WOTH": "Any other White background",
    "WROM": "Gypsy / Roma", "MWBC": "White and Black Caribbean",
    "MWBA": "White and Black African", "MWAS": "White and Asian",
    "MOTH": "Any other mixed background", "AIND": "Indian", "APKN": "Pakistani",
    "ABAN": "Bangladeshi", "AOTH": "Any other Asian background", "BCRB": "Black Caribbean",
    "BAFR": "Black - African", "BOTH": "Any other Black background", "CHNE": "Chinese",
    "OOTH": "Any other ethnic group", "REFU": "Refused", "NOBT": "Information not yet obtained",
}  # fmt: skip
_ETHNICITY_MAJOR_LABELS = {
    "WHIT": "White", "MIXD": "Mixed / multiple ethnic groups", "ASIA": "Asian or Asian British",
    "BLAC": "Black, African, Caribbean or Black British", "CHNE": "Chinese",
    "AOEG": "Any other ethnic group", "UNCL": "Unclassified",
}  # fmt: skip
_LANGUAGE_LABELS = {"ENG": "English", "OTH": "Other than English", "UNC": "Unclassified"}
_SEX_LABELS = {"F": "Female", "M": "Male"}
_NC_YEAR_LABELS = {0: "Reception", **{y: f"Year {y}" for y in range(1, 12)}}
_NATIONALITY_LABELS = {
    "GBR": "United Kingdom", "POL": "Poland", "ROU": "Romania", "IND": "India",
    "PAK": "Pakistan", "NGA": "Nigeria", "LTU": "Lithuania", "IRL": "Ireland", "ITA": "Italy",
    "PRT": "Portugal", "BGR": "Bulgaria", "ESP": "Spain", "SOM": "Somalia",
    "BGD": "Bangladesh", "FRA": "France", "DEU": "Germany", "CHN": "China",
    "USA": "United States", "OTH": "Other", "NOT": "Not known or refused",
}  # fmt: skip
_LABELS: dict[tuple[object, ...], Mapping[Any, str]] = {
    SEN_PROVISION: _SEN_PROVISION_LABELS, SEN_PRIMARY_NEED: _SEN_NEED_LABELS,
    WRITING_TA: _WRITING_TA_LABELS, EXCLUSION_REASONS: _EXCLUSION_REASON_LABELS,
    ETHNICITY_MINOR: _ETHNICITY_MINOR_LABELS, ETHNICITY_MAJOR: _ETHNICITY_MAJOR_LABELS,
    LANGUAGE_GROUPS: _LANGUAGE_LABELS, SEX: _SEX_LABELS, NC_YEARS: _NC_YEAR_LABELS,
    NATIONALITIES: _NATIONALITY_LABELS,
    LA_CODES: {code: name for code, (name, _region) in LOCAL_AUTHORITIES.items()},
}  # fmt: skip


def labels(domain: tuple[object, ...] | None) -> Mapping[Any, str] | None:
    """What each value of a code list means, or None for a self-describing list.

    >>> labels(SEN_PROVISION)["E"]
    'Education, health and care plan'
    >>> labels(PHASES) is None
    True
    """
    return _LABELS.get(domain) if domain is not None else None
